"""pSp encoders (Richardson et al., "Encoding in Style", CVPR 2021) over an IR-SE50 backbone.

* :class:`GradualStyleEncoder` -- pSp's W+ encoder: a feature pyramid over the IR-SE stages, with one
  map2style head (:class:`GradualStyleBlock`) per style: coarse heads (0-2) read the 1/16 map ``c3``,
  middle heads (3-6) the 1/8 map ``p2 = up(c3) + latlayer1(c2)``, fine heads (7-) the 1/4 map
  ``p1 = up(p2) + latlayer2(c1)``.
* :class:`WEncoder` -- pSp's ``BackboneEncoderUsingLastLayerIntoW``: global average pool of the last stage and
  one EqualLinear; the single ``w`` is broadcast to all ``num_ws`` layers.

With default arguments the ``state_dict`` keys and shapes equal the official ones, so the encoder part of
``psp_ffhq_encode.pt`` (keys ``encoder.<key>``) loads strictly after stripping the ``encoder.`` prefix.
The encoders output raw codes; adding ``latent_avg`` (pSp's ``start_from_latent_avg``) is up to the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models.stylegan2 import EqualLinear
from .irse import IRSE_CHANNELS, assert_shape, build_body, build_input_layer, check_channels

__all__ = ["GradualStyleBlock", "GradualStyleEncoder", "WEncoder", "check_input_size", "input_hw"]


def check_input_size(input_size: int) -> int:
    """Validate an encoder input resolution: a power of two, at least 16."""
    if input_size < 16 or input_size & (input_size - 1):
        raise ValueError(f"input_size must be a power of two >= 16, got {input_size}")
    return input_size


def input_hw(input_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of an encoder input: one side (square) or ``[height, width]`` -- e4e / ReStyle's cars
    encoders read 192x256. The larger side is a power of two >= 16 (it sets the heads' depth) and both sides are
    multiples of 16 (the backbone's stride)."""
    if isinstance(input_size, int):
        return check_input_size(input_size), input_size
    hw = tuple(int(v) for v in input_size)
    if len(hw) != 2 or min(hw) < 16 or any(v % 16 for v in hw):
        raise ValueError(f"input_size must be one side or [height, width], multiples of 16, got {input_size}")
    check_input_size(max(hw))
    return hw


def head_spatial(input_size: int | Sequence[int], stride: int) -> int:
    """The ``spatial`` of a style head reading a ``1/stride`` feature map: the larger side's (pSp's 16 / 32 / 64
    at 256 px; the 4 / 5 / 6 stride-2 convs then bring a 192x256 input's maps to 1x1 as well)."""
    return max(input_hw(input_size)) // stride


class GradualStyleBlock(nn.Module):
    """pSp's map2style head: ``log2(spatial)`` stride-2 3x3 convs (LeakyReLU 0.01) to 1x1, then EqualLinear.

    Keys: ``convs.{0,2,4,...}.{weight,bias}``, ``linear.{weight,bias}``.
    """

    def __init__(
        self,
        in_channels: int,  # Channels of the input feature map.
        out_channels: int,  # Width of the convs and of the output style (w_dim).
        spatial: int,  # Resolution of the input feature map (a power of two).
    ):
        super().__init__()
        self.out_channels = out_channels
        self.spatial = spatial
        num_pools = int(math.log2(spatial))
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1)]
        layers.append(nn.LeakyReLU())
        for _ in range(num_pools - 1):
            layers += [
                nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=2, padding=1),
                nn.LeakyReLU(),
            ]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_channels, out_channels, lr_mul=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features [N, in_channels, spatial, spatial] -> style [N, out_channels]."""
        x = self.convs(x)
        assert_shape(x, [None, self.out_channels, 1, 1], "GradualStyleBlock features")
        return self.linear(x.flatten(1))


def upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize ``x`` to ``y``'s resolution (align_corners=True, as pSp) and add ``y``."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class _IRSEEncoderBase(nn.Module):
    """Shared stem/body construction and input checks for the IR-SE encoders."""

    def __init__(
        self,
        num_ws: int,
        w_dim: int,
        in_channels: int,
        input_size: int | Sequence[int],
        num_layers: int,
        mode: str,
        channels: Sequence[int],
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
        self.input_layer = build_input_layer(in_channels, self.channels[0])
        self.body, self.stage_ends = build_body(num_layers, mode, self.channels)

    def _check_input(self, x: torch.Tensor) -> None:
        assert_shape(x, [None, self.in_channels, *self.input_hw], f"{type(self).__name__} input")

    def _check_output(self, ws: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        assert_shape(ws, [x.shape[0], self.num_ws, self.w_dim], "ws")
        return ws

    def _pyramid_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run stem and body; return pSp's ``c1`` (1/4 res), ``c2`` (1/8) and ``c3`` (1/16) stage outputs."""
        x = self.input_layer(x)
        feats = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.stage_ends[1:]:
                feats[i] = x
        c1, c2, c3 = (feats[i] for i in self.stage_ends[1:])
        return c1, c2, c3


class GradualStyleEncoder(_IRSEEncoderBase):
    """pSp's FPN W+ encoder: images [N, in_channels, input_size, input_size] -> ws [N, num_ws, w_dim].

    Head spatial sizes follow ``input_size`` (16 / 32 / 64 for 256 px). With defaults this is the official
    18-style encoder of ``psp_ffhq_encode.pt`` (267,136,704 parameters).
    """

    coarse_ind = 3  # Styles [0, 3) read c3.
    middle_ind = 7  # Styles [3, 7) read p2; styles [7, num_ws) read p1.

    def __init__(
        self,
        num_ws: int = 18,  # Number of styles (18 for a 1024 px generator).
        w_dim: int = 512,  # Style (W) dimensionality.
        in_channels: int = 3,  # Input image channels.
        input_size: int | Sequence[int] = 256,  # Input resolution: one side, or [height, width] (input_hw).
        num_layers: int = 50,  # IR-SE depth: 50, 100 or 152 (pSp uses 50).
        mode: str = "ir_se",  # "ir_se" (pSp) or "ir".
        channels: Sequence[int] = IRSE_CHANNELS,  # Backbone stage widths; the pyramid width is channels[3].
    ):
        super().__init__(num_ws, w_dim, in_channels, input_size, num_layers, mode, channels)
        width = self.channels[3]
        self.styles = nn.ModuleList()
        for i in range(num_ws):
            if i < self.coarse_ind:
                spatial = head_spatial(input_size, 16)
            elif i < self.middle_ind:
                spatial = head_spatial(input_size, 8)
            else:
                spatial = head_spatial(input_size, 4)
            self.styles.append(GradualStyleBlock(width, w_dim, spatial))
        self.latlayer1 = nn.Conv2d(self.channels[2], width, kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(self.channels[1], width, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        c1, c2, c3 = self._pyramid_inputs(x)
        latents = [self.styles[j](c3) for j in range(min(self.coarse_ind, self.num_ws))]
        p2 = upsample_add(c3, self.latlayer1(c2))
        latents += [self.styles[j](p2) for j in range(self.coarse_ind, min(self.middle_ind, self.num_ws))]
        p1 = upsample_add(p2, self.latlayer2(c1))
        latents += [self.styles[j](p1) for j in range(self.middle_ind, self.num_ws)]
        return self._check_output(torch.stack(latents, dim=1), x)


class WEncoder(_IRSEEncoderBase):
    """pSp's ``BackboneEncoderUsingLastLayerIntoW``: one ``w`` from the pooled last stage, broadcast to all
    layers: images [N, in_channels, input_size, input_size] -> ws [N, num_ws, w_dim] with equal rows.
    """

    def __init__(
        self,
        num_ws: int = 18,  # Number of layers the single w is broadcast to.
        w_dim: int = 512,  # W dimensionality.
        in_channels: int = 3,  # Input image channels.
        input_size: int | Sequence[int] = 256,  # Input resolution: one side, or [height, width] (input_hw).
        num_layers: int = 50,  # IR-SE depth: 50, 100 or 152.
        mode: str = "ir_se",  # "ir_se" (pSp) or "ir".
        channels: Sequence[int] = IRSE_CHANNELS,  # Backbone stage widths.
    ):
        super().__init__(num_ws, w_dim, in_channels, input_size, num_layers, mode, channels)
        self.output_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = EqualLinear(self.channels[3], w_dim, lr_mul=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        w = self.linear(self.output_pool(self.body(self.input_layer(x))).flatten(1))
        return self._check_output(w.unsqueeze(1).repeat(1, self.num_ws, 1), x)
