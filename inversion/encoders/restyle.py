"""ReStyle encoders (Alaluf et al., "ReStyle: A Residual-Based StyleGAN Encoder via Iterative Refinement",
ICCV 2021).

ReStyle's encoders read the image concatenated with the current reconstruction (``in_channels=6`` by
default) and predict a residual that the caller adds to the current ``ws`` (on the first step the caller
uses the average latent). Every style comes from the final 1/16-resolution map (16x16 for 256 px input)
through a pSp map2style head (:class:`~inversion.encoders.psp.GradualStyleBlock`):

* :class:`BackboneEncoder` -- IR-SE50 body (``restyle_psp_encoders.BackboneEncoder``);
* :class:`ResNetBackboneEncoder` -- torchvision ResNet-34 body without the max-pool, with a new 7x7 stride-2
  ``conv1`` for ``in_channels`` inputs, ``bn1`` and a PReLU named ``relu`` (``ResNetBackboneEncoder``);
* :class:`ProgressiveBackboneEncoder` / :class:`ResNetProgressiveBackboneEncoder` -- the same layers with
  e4e's progressive base-``w`` + deltas output (``restyle_e4e_encoders``); see :mod:`inversion.encoders.e4e`
  for the ``progressive_stage`` semantics.

With default arguments the ``state_dict`` keys and shapes equal the official ones, so the ``encoder.<key>``
entries of ReStyle checkpoints load strictly after stripping the ``encoder.`` prefix. ResNet body units are
``body.0`` .. ``body.15`` (torchvision ``layer1.0`` .. ``layer4.2``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from ..models.state import load_state_strict
from .e4e import ProgressiveStageMixin
from .irse import IRSE_CHANNELS, assert_shape, check_channels, expand_input_conv, read_state_dict
from .psp import GradualStyleBlock, _IRSEEncoderBase, head_spatial, input_hw

__all__ = [
    "RESNET34_CHANNELS",
    "RESNET34_HINT",
    "BackboneEncoder",
    "ProgressiveBackboneEncoder",
    "ResNetBackboneEncoder",
    "ResNetProgressiveBackboneEncoder",
    "load_resnet34_weights",
]

RESNET34_CHANNELS = (64, 128, 256, 512)  # torchvision ResNet-34 widths of layer1..layer4.
RESNET34_BLOCKS = (3, 4, 6, 3)  # BasicBlocks per layer.
RESNET34_HINT = (
    "It should be torchvision's ImageNet ResNet-34 state dict (e.g. 'resnet34-b627a593.pth' or "
    "'resnet34-333f7ec4.pth' from download.pytorch.org/models); download it and pass its local path."
)


def _style_heads(num_ws: int, in_channels: int, w_dim: int, spatial: int) -> nn.ModuleList:
    return nn.ModuleList(GradualStyleBlock(in_channels, w_dim, spatial) for _ in range(num_ws))


def _progressive_ws(encoder: ProgressiveStageMixin, heads: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """Base ``w`` from ``heads[0]`` plus deltas ``1..num_active_deltas``, all from the same feature map."""
    w = heads[0](x)
    ws = [w] + [w + heads[i](x) for i in range(1, encoder.num_active_deltas + 1)]
    ws += [w] * (encoder.num_ws - len(ws))
    return torch.stack(ws, dim=1)


class BackboneEncoder(_IRSEEncoderBase):
    """ReStyle's IR-SE50 encoder: [N, in_channels, input_size, input_size] -> residual ws [N, num_ws, w_dim].

    All heads read the last stage (1/16 resolution). Defaults: 205,585,792 parameters (6-channel input).
    """

    def __init__(
        self,
        num_ws: int = 18,  # Number of styles.
        w_dim: int = 512,  # Style (W) dimensionality.
        in_channels: int = 6,  # Input channels: image + current reconstruction.
        input_size: int | Sequence[int] = 256,  # Input resolution: one side, or [height, width] (input_hw).
        num_layers: int = 50,  # IR-SE depth: 50, 100 or 152 (ReStyle uses 50).
        mode: str = "ir_se",  # "ir_se" (ReStyle) or "ir".
        channels: Sequence[int] = IRSE_CHANNELS,  # Backbone stage widths.
    ):
        super().__init__(num_ws, w_dim, in_channels, input_size, num_layers, mode, channels)
        self.styles = _style_heads(num_ws, self.channels[3], w_dim, head_spatial(input_size, 16))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Final 1/16-resolution feature map."""
        self._check_input(x)
        return self.body(self.input_layer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.features(x)
        return self._check_output(torch.stack([head(feat) for head in self.styles], dim=1), x)


class ProgressiveBackboneEncoder(ProgressiveStageMixin, BackboneEncoder):
    """ReStyle-e4e IR-SE50 encoder: base ``w`` from ``styles.0`` plus per-layer deltas up to
    ``progressive_stage`` (ReStyle's ``restyle_e4e_encoders.ProgressiveBackboneEncoder``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._check_output(_progressive_ws(self, self.styles, self.features(x)), x)


class ResNetBackboneEncoder(nn.Module):
    """ReStyle's ResNet-34 encoder: [N, in_channels, input_size, input_size] -> ws [N, num_ws, w_dim].

    ``conv1`` (7x7, stride 2, no bias) -> ``bn1`` -> PReLU ``relu`` -> 16 torchvision BasicBlocks (no
    max-pool), so the last map is at 1/16 resolution. Defaults: 195,928,128 parameters (6-channel input).
    No weights are loaded here; :func:`load_resnet34_weights` gives the ImageNet initialisation ReStyle uses.
    """

    def __init__(
        self,
        num_ws: int = 18,  # Number of styles.
        w_dim: int = 512,  # Style (W) dimensionality.
        in_channels: int = 6,  # Input channels: image + current reconstruction.
        input_size: int | Sequence[int] = 256,  # Input resolution: one side, or [height, width] (input_hw).
        channels: Sequence[int] = RESNET34_CHANNELS,  # Widths of ResNet layer1..layer4.
    ):
        super().__init__()
        if num_ws < 1 or w_dim < 1:
            raise ValueError(f"num_ws and w_dim must be positive, got {num_ws}, {w_dim}")
        self.num_ws = num_ws
        self.w_dim = w_dim
        self.in_channels = in_channels
        self.input_size = input_size
        self.input_hw = input_hw(input_size)
        self.channels = check_channels(channels)
        self.conv1 = nn.Conv2d(in_channels, self.channels[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.channels[0])
        self.relu = nn.PReLU(self.channels[0])
        blocks: list[nn.Module] = []
        in_ch = self.channels[0]
        for layer, (width, count) in enumerate(zip(self.channels, RESNET34_BLOCKS)):
            for b in range(count):
                stride = 2 if layer > 0 and b == 0 else 1
                downsample = None
                if stride != 1 or in_ch != width:
                    downsample = nn.Sequential(
                        nn.Conv2d(in_ch, width, kernel_size=1, stride=stride, bias=False),
                        nn.BatchNorm2d(width),
                    )
                blocks.append(BasicBlock(in_ch, width, stride, downsample))
                in_ch = width
        self.body = nn.Sequential(*blocks)
        for m in self.body.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.styles = _style_heads(num_ws, self.channels[3], w_dim, head_spatial(input_size, 16))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Final 1/16-resolution feature map."""
        assert_shape(x, [None, self.in_channels, *self.input_hw], f"{type(self).__name__} input")
        return self.body(self.relu(self.bn1(self.conv1(x))))

    def _check_output(self, ws: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        assert_shape(ws, [x.shape[0], self.num_ws, self.w_dim], "ws")
        return ws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.features(x)
        return self._check_output(torch.stack([head(feat) for head in self.styles], dim=1), x)


class ResNetProgressiveBackboneEncoder(ProgressiveStageMixin, ResNetBackboneEncoder):
    """ReStyle-e4e ResNet-34 encoder: base ``w`` from ``styles.0`` plus per-layer deltas up to
    ``progressive_stage`` (ReStyle's ``restyle_e4e_encoders.ResNetProgressiveBackboneEncoder``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._check_output(_progressive_ws(self, self.styles, self.features(x)), x)


def load_resnet34_weights(
    module: ResNetBackboneEncoder,  # A (progressive) ResNet backbone encoder.
    path: str | os.PathLike,  # Local path of torchvision's ImageNet resnet34 state dict. Never downloaded.
    extra_channel_init: str = "randn",  # Init of input channels beyond RGB: "randn" (ReStyle) or "zeros".
) -> list[str]:
    """Initialise ``conv1``, ``bn1`` and ``body`` from torchvision ImageNet ResNet-34 weights (no ``fc``).

    ``layer{L}.{b}`` maps to ``body.{n}`` in order (``layer1.0`` -> ``body.0`` ... ``layer4.2`` ->
    ``body.15``). For ``in_channels > 3`` the RGB kernels fill the first three input channels of ``conv1`` and
    the rest is initialised by ``extra_channel_init`` (ReStyle: ``torch.randn``); for ``in_channels < 3``
    ``conv1`` keeps its initialisation. The PReLU ``relu`` and the heads keep their initialisation.
    Returns the names of the loaded tensors (in this module's naming).
    """
    if not isinstance(module, ResNetBackboneEncoder):
        raise TypeError(f"expected a ResNetBackboneEncoder, got {type(module).__name__}")
    state = read_state_dict(path, "ImageNet ResNet-34", RESNET34_HINT)
    offsets = [sum(RESNET34_BLOCKS[:i]) for i in range(len(RESNET34_BLOCKS))]
    mapped: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in ("conv1", "bn1"):
            mapped[key] = value
        elif head.startswith("layer") and head[5:].isdigit() and 1 <= int(head[5:]) <= len(RESNET34_BLOCKS):
            block, _, rest = rest.partition(".")
            mapped[f"body.{offsets[int(head[5:]) - 1] + int(block)}.{rest}"] = value
        elif head != "fc":
            unexpected.append(key)
    if "conv1.weight" in mapped:
        if module.in_channels < mapped["conv1.weight"].shape[1]:  # non-RGB input: keep conv1's initialisation
            del mapped["conv1.weight"]
        else:
            mapped["conv1.weight"] = expand_input_conv(
                mapped["conv1.weight"], module.in_channels, extra_channel_init
            )
    if unexpected:
        raise RuntimeError(f"{path}: keys that are not part of a torchvision ResNet-34: {unexpected[:8]}. "
                           + RESNET34_HINT)
    skip_conv1 = module.in_channels < 3
    load_state_strict(module, mapped, str(path), what="ResNet-34 weights", hint=RESNET34_HINT, error=RuntimeError,
                      required=lambda k: k.startswith(("bn1.", "body.")) or (k == "conv1.weight" and not skip_conv1))
    return list(mapped)
