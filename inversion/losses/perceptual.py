"""Image reconstruction losses: pixel MSE, LPIPS (AlexNet / VGG16) and an Image2StyleGAN VGG16 feature loss.

Every loss is an ``nn.Module`` over images [N, 3, H, W] nominally in [-1, 1]. ``forward(..., per_sample=False)``
returns the batch mean (a scalar) and ``per_sample=True`` the per-image values [N], whose mean is the scalar.

Networks are frozen (parameters ``requires_grad=False``, always in eval mode, see :class:`FrozenLoss`);
gradients flow only to the input images. Constructors do no file I/O and never download anything:
pretrained weights come from explicit local files through ``load_weights`` / ``from_pretrained``.

LPIPS follows pSp's ``criteria/lpips`` (which reproduces richzhang's ``lpips`` v0.1): scaling layer
``(x - shift) / scale`` with shift (-0.030, -0.088, -0.188) and scale (0.458, 0.448, 0.450), five trunk
activations, each unit-normalised over channels (eps 1e-10), squared difference, 1x1 ``lin`` layer,
spatial mean, summed over layers; the batch value is ``sum / N``. pSp computes it at 256 px (the generator
output goes through ``AdaptiveAvgPool2d((256, 256))``): pass ``size=256`` for that.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders.irse import read_state_dict

__all__ = [
    "PSP_FACE_CROP",
    "FrozenLoss",
    "LPIPSLoss",
    "MSELoss",
    "VGGFeatureLoss",
    "crop_resize",
    "lpips_lin_weights_path",
]

# pSp's face box on 256 px images, x[:, :, 35:223, 32:220], as (top, bottom, left, right).
PSP_FACE_CROP = (35, 223, 32, 220)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONE_HINT = (
    "Expected torchvision ImageNet weights of the '{net}' trunk with keys 'features.<i>.weight/bias' (a full "
    "torchvision state dict such as alexnet-owt-7be5be79.pth / vgg16-397923af.pth also works; extra keys are "
    "ignored). Nothing is downloaded: pass a local path."
)
_LPIPS_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# VGG16 ``features`` index of each conv layer (torchvision's cfg "D"); the ReLU after conv i is i + 1.
VGG16_CONV_INDEX = {
    "conv1_1": 0, "conv1_2": 2,
    "conv2_1": 5, "conv2_2": 7,
    "conv3_1": 10, "conv3_2": 12, "conv3_3": 14,
    "conv4_1": 17, "conv4_2": 19, "conv4_3": 21,
    "conv5_1": 24, "conv5_2": 26, "conv5_3": 28,
}  # fmt: skip


class FrozenLoss(nn.Module):
    """Base class of losses with frozen networks: ``train()`` is a no-op, so the module (and its BatchNorm /
    Dropout layers) stays in eval mode even inside a model that is put in training mode."""

    def freeze(self) -> None:
        """Set ``requires_grad=False`` on every parameter and switch to eval mode."""
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenLoss:  # always eval, whatever ``mode``
        return super().train(False)


def crop_resize(
    x: torch.Tensor,  # Images [N, C, H, W].
    resize_to: int | None = None,  # If set and H, W differ from it: AdaptiveAvgPool2d((resize_to, resize_to)).
    crop: Sequence[int] | None = None,  # (top, bottom, left, right): x[:, :, top:bottom, left:right].
    out_size: int | None = None,  # If set: AdaptiveAvgPool2d((out_size, out_size)) after the crop.
) -> torch.Tensor:
    """pSp's pre-processing chain: optional resize by adaptive average pooling (pSp's ``face_pool``), optional
    crop, optional adaptive average pooling to the network input size (e.g. the ID loss' 112 px)."""
    if resize_to is not None and tuple(x.shape[-2:]) != (resize_to, resize_to):
        x = F.adaptive_avg_pool2d(x, (resize_to, resize_to))
    if crop is not None:
        top, bottom, left, right = (int(c) for c in crop)
        if not (0 <= top < bottom <= x.shape[-2] and 0 <= left < right <= x.shape[-1]):
            raise ValueError(f"crop {tuple(crop)} does not fit images of size {tuple(x.shape[-2:])}")
        x = x[:, :, top:bottom, left:right]
    if out_size is not None:
        x = F.adaptive_avg_pool2d(x, (out_size, out_size))
    return x


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"expected two image batches [N, C, H, W] of equal shape, got {list(x.shape)}, {list(y.shape)}"
        )


def _reduce(values: torch.Tensor, per_sample: bool) -> torch.Tensor:
    return values if per_sample else values.mean()


class MSELoss(nn.Module):
    """Pixel L2 loss ``F.mse_loss(y_hat, y)`` (pSp's ``l2_lambda`` term); per image: mean over C, H, W.

    ``crop`` gives pSp's ``l2_lambda_crop`` variant (``PSP_FACE_CROP`` on 256 px images).
    """

    def __init__(
        self,
        crop: Sequence[int] | None = None,  # (top, bottom, left, right) applied to both images; None: whole image.
    ):
        super().__init__()
        self.crop = None if crop is None else tuple(int(c) for c in crop)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
        """Mean squared error; scalar, or [N] with ``per_sample=True``."""
        _check_pair(y_hat, y)
        y_hat, y = crop_resize(y_hat, crop=self.crop), crop_resize(y, crop=self.crop)
        return _reduce((y_hat - y).pow(2).flatten(1).mean(1), per_sample)


def lpips_lin_weights_path(net: str = "alex", version: str = "0.1") -> Path:
    """Path of the LPIPS linear-layer weights shipped inside the installed ``lpips`` wheel."""
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / f"v{version}" / f"{net}.pth"


class LPIPSLoss(FrozenLoss):
    """LPIPS v0.1 (Zhang et al. 2018) through the ``lpips`` package, as used by pSp / e4e / ReStyle.

    The constructor builds ``lpips.LPIPS(net=..., pretrained=False, pnet_rand=True)``: random trunk and
    random linear layers, no file read and no download. Load real weights with :meth:`from_pretrained`
    (trunk from a local torchvision ``features.*`` file, linear layers from the ``lpips`` wheel) or with
    :meth:`load_backbone_weights` and :meth:`load_lin_weights`.

    Inputs are in [-1, 1]. ``size`` resizes both images by adaptive average pooling first (pSp: 256);
    ``crop`` then crops them (pSp's ``lpips_lambda_crop`` uses ``PSP_FACE_CROP`` at 256 px).
    """

    def __init__(
        self,
        net: str = "alex",  # "alex" (pSp / e4e default) or "vgg".
        size: int | None = None,  # Compute at size x size (adaptive average pooling); pSp: 256. None: as given.
        crop: Sequence[int] | None = None,  # (top, bottom, left, right) after resizing; None: whole image.
    ):
        super().__init__()
        if net not in _LPIPS_CHANNELS:
            raise ValueError(f"net should be 'alex' or 'vgg', got {net!r}")
        import lpips

        self.net_type = net
        self.size = size
        self.crop = None if crop is None else tuple(int(c) for c in crop)
        with warnings.catch_warnings():  # torchvision's deprecation warning for lpips' ``pretrained=False``
            warnings.simplefilter("ignore", UserWarning)
            self.lpips = lpips.LPIPS(net=net, version="0.1", pretrained=False, pnet_rand=True, verbose=False)
        self.freeze()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,  # torchvision ImageNet ``features.*`` weights of the trunk (fp16 ok).
        net: str = "alex",
        lin_path: str | os.PathLike | None = None,  # LPIPS linear layers; None: the file inside the lpips wheel.
        **kwargs,
    ) -> LPIPSLoss:
        """Build an :class:`LPIPSLoss` and load the trunk and the linear layers from local files."""
        loss = cls(net=net, **kwargs)
        loss.load_weights(path, lin_path)
        return loss

    def load_weights(self, backbone_path: str | os.PathLike, lin_path: str | os.PathLike | None = None) -> None:
        """Load the trunk (:meth:`load_backbone_weights`) and the linear layers (:meth:`load_lin_weights`)."""
        self.load_backbone_weights(backbone_path)
        self.load_lin_weights(lin_path)

    @torch.no_grad()
    def load_backbone_weights(self, path: str | os.PathLike) -> None:
        """Load torchvision-layout ``features.<i>.weight/bias`` into lpips' ``net.slice1..5`` (same indices),
        cast to float32. Every trunk tensor must be present with the right shape."""
        hint = BACKBONE_HINT.format(net=self.net_type)
        state = read_state_dict(path, f"LPIPS {self.net_type} trunk", hint)
        own = self.lpips.net.state_dict()
        new = {}
        for key, value in own.items():  # 'slice<k>.<i>.<param>' -> 'features.<i>.<param>'
            src = "features." + key.split(".", 1)[1]
            if src not in state:
                raise RuntimeError(f"{path}: missing '{src}' for the LPIPS {self.net_type} trunk. {hint}")
            if state[src].shape != value.shape:
                raise RuntimeError(f"{path}: '{src}' has shape {list(state[src].shape)}, expected {list(value.shape)}")
            new[key] = state[src].to(value.dtype)
        self.lpips.net.load_state_dict(new, strict=True)

    @torch.no_grad()
    def load_lin_weights(self, path: str | os.PathLike | None = None) -> None:
        """Load the five LPIPS 1x1 ``lin<k>.model.1.weight`` layers (default: the file in the ``lpips`` wheel)."""
        path = lpips_lin_weights_path(self.net_type) if path is None else Path(path)
        state = read_state_dict(path, f"LPIPS {self.net_type} linear layers", "It ships with the lpips package.")
        for k, lin in enumerate(self.lpips.lins):
            key = f"lin{k}.model.1.weight"
            if key not in state or state[key].shape != lin.model[-1].weight.shape:
                raise RuntimeError(f"{path}: missing or mis-shaped '{key}' (LPIPS {self.net_type} v0.1 expected)")
            lin.model[-1].weight.copy_(state[key])

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
        """LPIPS distance of images in [-1, 1]; scalar (batch mean), or [N] with ``per_sample=True``."""
        _check_pair(y_hat, y)
        y_hat = crop_resize(y_hat, self.size, self.crop)
        y = crop_resize(y, self.size, self.crop)
        return _reduce(self.lpips(y_hat, y).flatten(), per_sample)


class VGGFeatureLoss(FrozenLoss):
    """Image2StyleGAN's perceptual loss (Abdal et al. 2019, Eq. 4): ``sum_j MSE(F_j(x), F_j(y))`` over VGG16
    layers conv1_1, conv1_2, conv3_2, conv4_2 (lambda_j = 1, each term normalised by its number of elements).

    Features are taken after each layer's ReLU (``after_relu=True``, as in the common PyTorch
    re-implementations slicing ``features[:2], [2:4], [4:14], [14:21]``). Inputs in [-1, 1] are mapped to
    [0, 1] and ImageNet-normalised. Only the needed part of torchvision's ``vgg16().features`` is built.
    """

    def __init__(
        self,
        layers: Sequence[str] = ("conv1_1", "conv1_2", "conv3_2", "conv4_2"),  # Keys of VGG16_CONV_INDEX.
        after_relu: bool = True,  # Use the ReLU output of each layer (else the raw conv output).
        size: int | None = None,  # Resize both images to size x size first (adaptive average pooling).
        layer_weights: Sequence[float] | None = None,  # lambda_j per layer; None: all 1.
    ):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        unknown = [name for name in layers if name not in VGG16_CONV_INDEX]
        if unknown or not layers or len(set(layers)) != len(layers):
            raise ValueError(f"layers must be distinct names from {list(VGG16_CONV_INDEX)}, got {list(layers)}")
        self.layers = tuple(layers)
        self.taps = tuple(VGG16_CONV_INDEX[name] + int(after_relu) for name in self.layers)
        self.size = size
        weights = [1.0] * len(self.layers) if layer_weights is None else [float(w) for w in layer_weights]
        if len(weights) != len(self.layers):
            raise ValueError("layer_weights must have one value per layer")
        self.layer_weights = tuple(weights)
        self.features = make_layers(cfgs["D"], batch_norm=False)[: max(self.taps) + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> VGGFeatureLoss:
        """Build a :class:`VGGFeatureLoss` and load torchvision VGG16 ``features.*`` weights from ``path``."""
        loss = cls(**kwargs)
        loss.load_weights(path)
        return loss

    @torch.no_grad()
    def load_weights(self, path: str | os.PathLike) -> None:
        """Load torchvision VGG16 ``features.<i>.weight/bias`` (fp16 is cast to float32); later layers and
        other keys in the file are ignored, every built layer must be covered."""
        hint = BACKBONE_HINT.format(net="vgg16")
        state = read_state_dict(path, "VGG16", hint)
        own = self.features.state_dict()
        new = {}
        for key, value in own.items():
            src = "features." + key
            if src not in state or state[src].shape != value.shape:
                raise RuntimeError(f"{path}: missing or mis-shaped '{src}' for VGG16. {hint}")
            new[key] = state[src].to(value.dtype)
        self.features.load_state_dict(new, strict=True)

    def extract(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The selected VGG16 activations of images in [-1, 1]."""
        x = crop_resize(x, self.size)
        x = ((x + 1) / 2 - self.mean) / self.std
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                feats.append(x)
        return [feats[sorted(self.taps).index(t)] for t in self.taps]

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
        """Sum over layers of the feature MSE; scalar (batch mean), or [N] with ``per_sample=True``."""
        _check_pair(y_hat, y)
        total = y_hat.new_zeros(y_hat.shape[0])
        for w, fa, fb in zip(self.layer_weights, self.extract(y_hat), self.extract(y)):
            total = total + w * (fa - fb).pow(2).flatten(1).mean(1)
        return _reduce(total, per_sample)
