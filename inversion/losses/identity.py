"""Identity / feature-similarity losses: ``1 - cos(embed(y_hat), embed(y))`` with a frozen embedding network.

* :class:`IDLoss` -- pSp's ID loss with the ArcFace IR-SE50 (TreB1eN ``model_ir_se50.pth``).
* :class:`FaceNetIDLoss` -- the same with facenet-pytorch's ``InceptionResnetV1`` (VGGFace2 weights).
* :class:`FeatureSimilarityLoss` (alias :data:`MocoLoss`) -- pSp / e4e's ``MocoLoss``: a torchvision ResNet-50
  with MoCo-v2 weights, for non-face domains.

As in pSp's ``criteria/id_loss.py`` the target embeddings are detached, so gradients reach only ``y_hat``;
``forward(y_hat, y)`` returns ``mean_i (1 - <e(y_hat_i), e(y_i)>)`` (pSp: ``loss / count``), and
``per_sample=True`` the [N] values. :meth:`similarity` gives the [N] cosine similarities for evaluation
(``val/id_sim``), without detaching. Inputs are images in [-1, 1]. Constructors read no files; weights come
from local files via ``load_weights(path)`` / ``from_pretrained(path)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders.irse import IRSE_CHANNELS, Backbone, read_state_dict
from ..models.state import load_state_strict
from .perceptual import IMAGENET_MEAN, IMAGENET_STD, PSP_FACE_CROP, FrozenLoss, crop_resize

__all__ = [
    "CURRICULARFACE_HINT",
    "CurricularFaceIDLoss",
    "FACENET_HINT",
    "IR_SE50_HINT",
    "MOCO_HINT",
    "EmbeddingSimilarityLoss",
    "FaceNetIDLoss",
    "FeatureSimilarityLoss",
    "IDLoss",
    "MocoLoss",
]

IR_SE50_HINT = (
    "It should be the ArcFace IR-SE50 face-recognition model 'model_ir_se50.pth' (TreB1eN layout): download it "
    "from the pixel2style2pixel README's 'IR-SE50 Model' link "
    "(https://drive.google.com/file/d/1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn/view?usp=sharing), originally from "
    "https://github.com/TreB1eN/InsightFace_Pytorch, and pass its local path. Nothing is downloaded automatically."
)
FACENET_HINT = (
    "It should be facenet-pytorch's VGGFace2 InceptionResnetV1 state dict '20180402-114759-vggface2.pt' "
    "(https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt); "
    "download it and pass its local path. Nothing is downloaded automatically."
)
MOCO_HINT = (
    "It should be the MoCo-v2 ResNet-50 checkpoint 'moco_v2_800ep_pretrain.pth.tar' of facebookresearch/moco "
    "(https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar; the "
    "ReStyle / e4e READMEs' 'MoCov2 Model' link, https://drive.google.com/file/d/18rLcNGdteX5LwT7sv_F7HWr12HpVEzVe, "
    "names it moco_v2_800ep_pretrain.pt(h)): keys 'module.encoder_q.*' under 'state_dict'; a plain torchvision "
    "ResNet state dict also loads. Pass its local path (paths.moco). Nothing is downloaded automatically."
)


class EmbeddingSimilarityLoss(FrozenLoss):
    """Base class: subclasses implement :meth:`embed` (images in [-1, 1] -> unit-norm embeddings [N, D])."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cosine similarity [N] of the embeddings of two image batches (evaluation: ``val/id_sim``)."""
        if x.shape != y.shape:
            raise ValueError(f"image batches differ in shape: {list(x.shape)} vs {list(y.shape)}")
        return F.cosine_similarity(self.embed(x), self.embed(y), dim=1)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
        """``1 - cos(embed(y_hat), embed(y).detach())``; scalar (batch mean) or [N] with ``per_sample=True``."""
        if y_hat.shape != y.shape:
            raise ValueError(f"image batches differ in shape: {list(y_hat.shape)} vs {list(y.shape)}")
        with torch.no_grad():  # pSp: y_feats.detach()
            target = self.embed(y)
        loss = 1 - F.cosine_similarity(self.embed(y_hat), target, dim=1)
        return loss if per_sample else loss.mean()


class IDLoss(EmbeddingSimilarityLoss):
    """pSp's identity loss with ArcFace IR-SE50 (``criteria/id_loss.py``).

    Pre-processing, with pSp's defaults: images not at ``resize_to`` (256) are first pooled to 256x256 with
    ``AdaptiveAvgPool2d`` (the ``if x.shape[2] != 256: x = self.pool(x)`` of StyleCLIP's copy of this loss;
    pSp itself always passes 256 px images: its outputs go through ``face_pool`` and its targets are resized
    to 256), cropped to ``x[:, :, 35:223, 32:220]`` and pooled to 112x112 (``face_pool``), then embedded by
    ``Backbone(input_size=112, num_layers=50, drop_ratio=0.6, mode='ir_se')`` (unit-norm output), so the
    cosine similarity is a dot product as in pSp.
    """

    def __init__(
        self,
        crop: Sequence[int] | None = PSP_FACE_CROP,  # (top, bottom, left, right) on the resized image; None: none.
        pool_size: int = 112,  # face_pool output = Backbone input size (a multiple of 16).
        resize_to: int | None = 256,  # Pool images of any other size to this first; None: never.
        num_layers: int = 50,  # Backbone depth (50 / 100 / 152).
        mode: str = "ir_se",  # "ir_se" (model_ir_se50.pth) or "ir".
        drop_ratio: float = 0.6,  # As pSp (unused in eval mode).
        channels: Sequence[int] = IRSE_CHANNELS,  # Stage widths (smaller only for tiny test networks).
    ):
        super().__init__()
        self.crop = None if crop is None else tuple(int(c) for c in crop)
        self.pool_size = int(pool_size)
        self.resize_to = resize_to
        self.facenet = Backbone(self.pool_size, num_layers, mode, drop_ratio=drop_ratio, channels=channels)
        self.freeze()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> IDLoss:
        """Build an :class:`IDLoss` and load ``model_ir_se50.pth`` from ``path`` strictly."""
        loss = cls(**kwargs)
        loss.load_weights(path)
        return loss

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a TreB1eN-layout IR-SE state dict strictly; ``FileNotFoundError`` (with where to get the file)
        if ``path`` does not exist."""
        state = read_state_dict(path, "ArcFace IR-SE50 (model_ir_se50.pth)", IR_SE50_HINT)
        load_state_strict(self.facenet, state, str(path), what="IR-SE50 weights (this IDLoss)", hint=IR_SE50_HINT,
                          error=RuntimeError)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Resize, crop and pool images as pSp does: [N, 3, H, W] -> [N, 3, pool_size, pool_size]."""
        return crop_resize(x, self.resize_to, self.crop, self.pool_size)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm ArcFace embeddings [N, 512] of images in [-1, 1]."""
        return self.facenet(self.preprocess(x))


CURRICULARFACE_HINT = (
    "It should be a CurricularFace IR-101 state dict in the TreB1eN/pSp Backbone layout (e.g. HyperStyle's "
    "'CurricularFace_Backbone.pth', loaded there by models/encoders/model_irse.IR_101); pass its local path."
)


class CurricularFaceIDLoss(IDLoss):
    """:class:`IDLoss` with CurricularFace's IR-101 (``mode='ir'``): HyperStyle's evaluation identity network.

    HyperStyle builds ``Backbone(112, 100, 'ir', drop_ratio=0.4, affine=False)``; the final BatchNorm1d is made
    affine only when the file holds its weight, so both variants load strictly.
    """

    def __init__(
        self,
        crop: Sequence[int] | None = PSP_FACE_CROP,  # (top, bottom, left, right) on the resized image; None: none.
        pool_size: int = 112,  # Backbone input size.
        resize_to: int | None = 256,  # Pool images of any other size to this first; None: never.
        num_layers: int = 100,  # IR-101.
        mode: str = "ir",  # CurricularFace has no squeeze-excitation.
        affine: bool = False,  # Affine final BatchNorm1d (from_pretrained follows the file).
        channels: Sequence[int] = IRSE_CHANNELS,  # Stage widths (smaller only for tiny test networks).
    ):
        super().__init__(crop=crop, pool_size=pool_size, resize_to=resize_to, num_layers=num_layers, mode=mode,
                         drop_ratio=0.4, channels=channels)
        self.facenet = Backbone(self.pool_size, num_layers, mode, drop_ratio=0.4, affine=affine, channels=channels)
        self.freeze()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> CurricularFaceIDLoss:
        """Build a :class:`CurricularFaceIDLoss` (affine or not, as the file) and load ``path`` strictly."""
        state = read_state_dict(path, "CurricularFace IR-101", CURRICULARFACE_HINT)
        loss = cls(affine="output_layer.4.weight" in state, **kwargs)
        try:
            loss.facenet.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise RuntimeError(f"{path}: not a CurricularFace IR-101 state dict. {CURRICULARFACE_HINT}\n{err}") from err
        return loss


class FaceNetIDLoss(EmbeddingSimilarityLoss):
    """Identity loss with facenet-pytorch's ``InceptionResnetV1`` (FaceNet trained on VGGFace2).

    Images in [-1, 1] are optionally resized / cropped, pooled to ``input_size`` (160) and standardised as
    facenet-pytorch's ``fixed_image_standardization`` expects, ``(255 * (x + 1) / 2 - 127.5) / 128 =
    x * 127.5 / 128``. The network is built with ``pretrained=None`` (no download); load a local VGGFace2 state
    dict with :meth:`load_weights` (its classifier ``logits.*`` is dropped).
    """

    def __init__(
        self,
        crop: Sequence[int] | None = None,  # (top, bottom, left, right) after resizing; None: whole image.
        input_size: int = 160,  # Network input size (facenet-pytorch's MTCNN default crop size).
        resize_to: int | None = None,  # Pool images of any other size to this before cropping; None: never.
    ):
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        self.crop = None if crop is None else tuple(int(c) for c in crop)
        self.input_size = int(input_size)
        self.resize_to = resize_to
        self.facenet = InceptionResnetV1(pretrained=None, classify=False)
        self.freeze()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> FaceNetIDLoss:
        """Build a :class:`FaceNetIDLoss` and load a local VGGFace2 state dict."""
        loss = cls(**kwargs)
        loss.load_weights(path)
        return loss

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load an InceptionResnetV1 state dict strictly, ignoring the classifier head ``logits.*``."""
        state = read_state_dict(path, "FaceNet InceptionResnetV1 (VGGFace2)", FACENET_HINT)
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        load_state_strict(self.facenet, state, str(path), what="InceptionResnetV1 weights", hint=FACENET_HINT,
                          error=RuntimeError)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> standardised [N, 3, input_size, input_size]."""
        return crop_resize(x, self.resize_to, self.crop, self.input_size) * (127.5 / 128.0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm FaceNet embeddings [N, 512]."""
        return self.facenet(self.preprocess(x))


class FeatureSimilarityLoss(EmbeddingSimilarityLoss):
    """pSp / e4e's ``MocoLoss`` (``criteria/moco_loss.py``): ``1 - cos`` of ResNet-50 pooled features.

    pSp's pre-processing is only ``F.interpolate(x, size=224)`` (nearest neighbour, no crop, no ImageNet
    normalisation: the [-1, 1] image goes in as is); the features are the 2048-d global-average-pooled output
    (the ``fc`` layer is removed), l2-normalised. Those are the defaults here; ``crop`` (applied before the
    resize), ``interpolation`` and ``imagenet_normalize`` are optional departures.
    """

    def __init__(
        self,
        arch: str = "resnet50",  # torchvision ResNet architecture (MoCo-v2: resnet50).
        size: int = 224,  # Input resolution.
        interpolation: str = "nearest",  # F.interpolate mode (pSp: default "nearest"); "area", "bilinear", ...
        crop: Sequence[int] | None = None,  # (top, bottom, left, right) before resizing; None: whole image.
        imagenet_normalize: bool = False,  # Map [-1, 1] to ImageNet-normalised input (pSp: False).
    ):
        super().__init__()
        import torchvision

        self.arch = arch
        self.size = int(size)
        self.interpolation = interpolation
        self.crop = None if crop is None else tuple(int(c) for c in crop)
        self.imagenet_normalize = imagenet_normalize
        self.model = torchvision.models.get_model(arch, weights=None)
        self.model.fc = nn.Identity()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> FeatureSimilarityLoss:
        """Build a :class:`FeatureSimilarityLoss` and load MoCo-v2 (or torchvision) ResNet weights from ``path``."""
        loss = cls(**kwargs)
        loss.load_weights(path)
        return loss

    @staticmethod
    def remap_moco_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """pSp's key remapping: keep ``[module.]encoder_q.*`` except ``encoder_q.fc.*`` and strip the prefix
        (MoCo's key encoder, queue and projection head are dropped). A plain torchvision state dict (no
        ``encoder_q``) only loses its ``fc.*``."""
        prefixes = ("module.encoder_q.", "encoder_q.")
        if any(k.startswith(prefixes) for k in state):
            out = {}
            for key, value in state.items():
                for prefix in prefixes:
                    if key.startswith(prefix):
                        name = key[len(prefix) :]
                        if not name.startswith("fc."):
                            out[name] = value
                        break
            return out
        return {k: v for k, v in state.items() if not k.startswith("fc.")}

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a MoCo checkpoint (``{'state_dict': {'module.encoder_q.*': ...}}``) strictly, fc excluded."""
        state = self.remap_moco_state_dict(read_state_dict(path, f"MoCo {self.arch}", MOCO_HINT))
        load_state_strict(self.model, state, str(path), what=f"torchvision {self.arch} weights", hint=MOCO_HINT,
                          error=RuntimeError)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> network input [N, 3, size, size]."""
        x = crop_resize(x, crop=self.crop)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=self.size, mode=self.interpolation)
        if self.imagenet_normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """l2-normalised pooled features [N, 2048] (ResNet-50)."""
        return F.normalize(self.model(self.preprocess(x)), dim=1)


MocoLoss = FeatureSimilarityLoss
