"""Training and evaluation losses for StyleGAN inversion (pSp / e4e / ReStyle).

Image losses take images [N, 3, H, W] in [-1, 1]; latent losses take ``ws`` [N, num_ws, w_dim]. Every loss
module returns the batch mean from ``forward(...)`` and per-sample values [N] with ``per_sample=True``.
Networks inside losses are frozen and stay in eval mode; gradients flow only to the inputs. Constructors
read no files and nothing is ever downloaded: pretrained weights are loaded from local paths with
``load_weights(path)`` / ``from_pretrained(path, ...)``.
"""

from .identity import EmbeddingSimilarityLoss, FaceNetIDLoss, FeatureSimilarityLoss, IDLoss, MocoLoss
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

__all__ = [
    "PSP_FACE_CROP",
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
