"""Training and evaluation losses for StyleGAN inversion (pSp / e4e / ReStyle).

Image losses take images [N, 3, H, W] in [-1, 1]; latent losses take ``ws`` [N, num_ws, w_dim]. Every loss
module returns the batch mean from ``forward(...)`` and per-sample values [N] with ``per_sample=True``.
Networks inside losses are frozen and stay in eval mode; gradients flow only to the inputs. Constructors
read no files and nothing is ever downloaded: pretrained weights are loaded from local paths with
``load_weights(path)`` / ``from_pretrained(path, ...)``. Every consumer declares a weighted loss network the
same way (:mod:`.spec`: ``{weight, module: {_target_: ...from_pretrained, path: ${paths.*}}}``).
"""

from .identity import (
    CurricularFaceIDLoss,
    EmbeddingSimilarityLoss,
    FaceNetIDLoss,
    FeatureSimilarityLoss,
    IDLoss,
    MocoLoss,
)
from .latent import (
    DeltaRegLoss,
    LatentCodesDiscriminator,
    LatentCodesPool,
    LatentL2Loss,
    WNormLoss,
    dims_to_discriminate,
    discriminator_loss,
    discriminator_loss_terms,
    fake_codes_for_discriminator,
    generator_adv_loss,
    r1_penalty,
)
from .perceptual import PSP_FACE_CROP, FrozenLoss, LPIPSLoss, MSELoss, VGGFeatureLoss, crop_resize
from .spec import INPUT_KINDS, LossTerm, MissingWeightsError, build_network, build_terms, weights_key

__all__ = [
    "INPUT_KINDS",
    "PSP_FACE_CROP",
    "CurricularFaceIDLoss",
    "LossTerm",
    "MissingWeightsError",
    "build_network",
    "build_terms",
    "weights_key",
    "DeltaRegLoss",
    "EmbeddingSimilarityLoss",
    "FaceNetIDLoss",
    "FeatureSimilarityLoss",
    "FrozenLoss",
    "IDLoss",
    "LPIPSLoss",
    "LatentCodesDiscriminator",
    "LatentCodesPool",
    "LatentL2Loss",
    "MSELoss",
    "MocoLoss",
    "VGGFeatureLoss",
    "WNormLoss",
    "crop_resize",
    "dims_to_discriminate",
    "discriminator_loss",
    "discriminator_loss_terms",
    "fake_codes_for_discriminator",
    "generator_adv_loss",
    "r1_penalty",
]
