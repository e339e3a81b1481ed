"""ResNet-IR / IR-SE backbones (ArcFace IR-SE50) in the module layout of TreB1eN's ``InsightFace_Pytorch``.

The ``state_dict`` keys are those of TreB1eN's ``Backbone`` (and of pSp's / e4e's / ReStyle's copies of it):

* ``input_layer.{0,1,2}`` -- 3x3 conv (no bias), BatchNorm2d, PReLU;
* ``body.<i>`` -- the bottleneck units, numbered over all four stages (24 units for 50 layers). Each unit has
  ``shortcut_layer`` (the official ``MaxPool2d(1, stride)``, i.e. :class:`Subsample`, when the width is unchanged,
  else ``{0: 1x1 conv, 1: BN}``) and
  ``res_layer.{0: BN, 1: 3x3 conv, 2: PReLU, 3: 3x3 conv (stride), 4: BN, 5: SE (fc1, fc2)}``;
* ``output_layer.{0: BN2d, 1: Dropout, 2: Flatten, 3: Linear, 4: BN1d}`` -- face-recognition head only.

:class:`Backbone` is the full face-recognition network; its ``state_dict`` loads ``model_ir_se50.pth``
strictly.
The encoders reuse ``input_layer`` and ``body`` (:func:`build_input_layer`, :func:`build_body`), and
:func:`load_backbone_weights` initialises them from ``model_ir_se50.pth`` as pSp / ReStyle do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..models.state import load_state_strict

__all__ = [
    "IRSE_CHANNELS",
    "IRSE50_HINT",
    "Backbone",
    "BottleneckIR",
    "BottleneckIRSE",
    "SEModule",
    "assert_shape",
    "build_body",
    "check_channels",
    "build_input_layer",
    "expand_input_conv",
    "get_block_specs",
    "load_backbone_weights",
    "read_state_dict",
]

IRSE_CHANNELS = (64, 128, 256, 512)  # Official stage widths; the input layer has IRSE_CHANNELS[0] channels.
IRSE50_HINT = (
    "It should be the ArcFace IR-SE50 face-recognition model 'model_ir_se50.pth' (TreB1eN layout) from "
    "the pSp / TreB1eN InsightFace_Pytorch releases; download it and pass its local path."
)
_UNITS_PER_STAGE = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}


def assert_shape(tensor: torch.Tensor, shape: Sequence[int | None], name: str = "tensor") -> None:
    """Raise ``AssertionError`` unless ``tensor.shape`` matches ``shape`` (``None`` matches any size)."""
    if tensor.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, tensor.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise AssertionError(f"{name}: expected shape {want}, got {list(tensor.shape)}")


def check_channels(channels: Sequence[int]) -> tuple[int, int, int, int]:
    """Validate four positive stage widths and return them as a tuple."""
    channels = tuple(int(c) for c in channels)
    if len(channels) != 4 or min(channels) < 1:
        raise ValueError(f"channels must be four positive stage widths, got {channels}")
    return channels  # type: ignore[return-value]


def get_block_specs(
    num_layers: int = 50,
    channels: Sequence[int] = IRSE_CHANNELS,
) -> list[list[tuple[int, int, int]]]:
    """Per stage, the ``(in_channels, depth, stride)`` of each unit; each stage's first unit has stride 2."""
    if num_layers not in _UNITS_PER_STAGE:
        raise ValueError(f"num_layers should be 50, 100 or 152, got {num_layers}")
    channels = check_channels(channels)
    stages = []
    in_ch = channels[0]
    for depth, units in zip(channels, _UNITS_PER_STAGE[num_layers]):
        stages.append([(in_ch, depth, 2)] + [(depth, depth, 1)] * (units - 1))
        in_ch = depth
    return stages


class SEModule(nn.Module):
    """Squeeze-and-excitation gate: global average pool, 1x1 conv down, ReLU, 1x1 conv up, sigmoid."""

    def __init__(
        self,
        channels: int,  # Number of feature channels.
        reduction: int = 16,  # Channel reduction of the bottleneck (at least one hidden channel is kept).
    ):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class Subsample(nn.Module):
    """``x[:, :, ::stride, ::stride]``: what the official ``MaxPool2d(1, stride)`` shortcut computes (a max over
    one element), as a view instead of a copy with int64 indices (no parameters, so no state-dict keys)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class BottleneckIR(nn.Module):
    """Improved-residual unit: ``BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN`` plus a shortcut."""

    use_se = False

    def __init__(
        self,
        in_channels: int,  # Input channels.
        depth: int,  # Output channels.
        stride: int,  # Stride of the second 3x3 conv and of the shortcut.
    ):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer: nn.Module = Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, (1, 1), stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if self.use_se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class BottleneckIRSE(BottleneckIR):
    """:class:`BottleneckIR` with a squeeze-and-excitation gate (``res_layer.5``) at the end of the branch."""

    use_se = True


def build_input_layer(
    in_channels: int = 3,  # Input image channels.
    out_channels: int = IRSE_CHANNELS[0],  # Width of the stem (the first stage's input width).
) -> nn.Sequential:
    """The stem ``input_layer``: 3x3 conv (stride 1, no bias), BatchNorm2d, PReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, (3, 3), 1, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.PReLU(out_channels),
    )


def build_body(
    num_layers: int = 50,  # 50, 100 or 152.
    mode: str = "ir_se",  # "ir" (plain units) or "ir_se" (with squeeze-and-excitation).
    channels: Sequence[int] = IRSE_CHANNELS,  # Output width of each of the four stages.
) -> tuple[nn.Sequential, tuple[int, int, int, int]]:
    """The ``body`` (all units, flat) and the index of the last unit of each stage.

    Every stage halves the resolution, so the stage outputs are at 1/2, 1/4, 1/8 and 1/16 of the input.
    For 50 layers the stage ends are (2, 6, 20, 23): pSp's ``c1``, ``c2``, ``c3`` are units 6, 20 and 23.
    """
    if mode not in ("ir", "ir_se"):
        raise ValueError(f"mode should be 'ir' or 'ir_se', got {mode!r}")
    unit = BottleneckIRSE if mode == "ir_se" else BottleneckIR
    units: list[nn.Module] = []
    ends = []
    for stage in get_block_specs(num_layers, channels):
        units += [unit(in_ch, depth, stride) for in_ch, depth, stride in stage]
        ends.append(len(units) - 1)
    return nn.Sequential(*units), tuple(ends)  # type: ignore[return-value]


class Backbone(nn.Module):
    """ArcFace ResNet-IR(-SE) face-recognition network (TreB1eN's ``Backbone``); output is an l2-normalised
    embedding. With the defaults this is IR-SE50 at 112x112, whose ``state_dict`` loads ``model_ir_se50.pth``
    strictly (see :func:`load_backbone_weights`). Used as the identity-loss network.
    """

    def __init__(
        self,
        input_size: int = 112,  # Input resolution (square); a multiple of 16 (official: 112 or 224).
        num_layers: int = 50,  # 50, 100 or 152.
        mode: str = "ir_se",  # "ir" or "ir_se".
        drop_ratio: float = 0.4,  # Dropout before the embedding layer (pSp's ID loss uses 0.6; eval: unused).
        affine: bool = True,  # Affine final BatchNorm1d (True in TreB1eN / model_ir_se50.pth).
        in_channels: int = 3,  # Input image channels.
        channels: Sequence[int] = IRSE_CHANNELS,  # Stage widths (smaller for tiny test models).
        embedding_dim: int = 512,  # Output embedding size.
    ):
        super().__init__()
        if input_size < 16 or input_size % 16 != 0:
            raise ValueError(f"input_size must be a positive multiple of 16, got {input_size}")
        channels = check_channels(channels)
        self.input_size = input_size
        self.in_channels = in_channels
        self.embedding_dim = embedding_dim
        self.input_layer = build_input_layer(in_channels, channels[0])
        feat = input_size // 16
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(channels[3]),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(channels[3] * feat * feat, embedding_dim),
            nn.BatchNorm1d(embedding_dim, affine=affine),
        )
        self.body, _ = build_body(num_layers, mode, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, in_channels, input_size, input_size] -> unit-norm embeddings [N, embedding_dim]."""
        assert_shape(x, [None, self.in_channels, self.input_size, self.input_size], "Backbone input")
        x = self.output_layer(self.body(self.input_layer(x)))
        return x / torch.norm(x, 2, 1, True)


def expand_input_conv(
    weight: torch.Tensor,  # Pretrained first-conv weight [out, 3, k, k] (RGB).
    in_channels: int,  # Input channels of the target conv (>= weight.shape[1]).
    extra_channel_init: str = "randn",  # "randn" (ReStyle: N(0, 1)) or "zeros" for the extra input channels.
) -> torch.Tensor:
    """Widen a pretrained RGB first-conv weight to ``in_channels`` inputs: the pretrained kernels go to the
    first channels, as ReStyle does for its 6-channel (image + current reconstruction) input.
    """
    out_ch, rgb, kh, kw = weight.shape
    if in_channels == rgb:
        return weight
    if in_channels < rgb:
        raise ValueError(f"cannot narrow a {rgb}-channel input conv to {in_channels} channels")
    if extra_channel_init == "randn":
        new = torch.randn(out_ch, in_channels, kh, kw, dtype=weight.dtype)
    elif extra_channel_init == "zeros":
        new = torch.zeros(out_ch, in_channels, kh, kw, dtype=weight.dtype)
    else:
        raise ValueError(f"extra_channel_init should be 'randn' or 'zeros', got {extra_channel_init!r}")
    new[:, :rgb] = weight
    return new


def read_state_dict(
    path: str | os.PathLike,  # Local weights file (torch.save'd state dict, optionally under 'state_dict').
    what: str,  # What the file is, for error messages.
    hint: str,  # Where to get the file, appended to error messages.
) -> dict[str, torch.Tensor]:
    """``torch.load`` a state dict on CPU with ``weights_only=True``; ``FileNotFoundError`` if missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} weights not found: '{path}'. {hint}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors. {hint}")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_backbone_weights(
    module: nn.Module,  # A Backbone, or an encoder with IR-SE ``input_layer`` / ``body``.
    path: str | os.PathLike,  # Local path of model_ir_se50.pth (TreB1eN layout). Never downloaded.
    extra_channel_init: str = "randn",  # Init of input channels beyond RGB: "randn" (ReStyle) or "zeros".
    skip_input_layer: bool = False,  # Keep the stem's initialisation (pSp with label_nc != 0 drops input_layer.*).
) -> list[str]:
    """Load pretrained ArcFace IR-SE50 weights from a local file; returns the names of the loaded tensors.

    * :class:`Backbone`: the whole ``state_dict`` is loaded strictly.
    * Encoders (pSp / e4e / ReStyle IR-SE): ``input_layer.*`` and ``body.*`` are loaded, ``output_layer.*``
      is skipped, as in pSp. With ``in_channels > 3`` the RGB kernels of ``input_layer.0.weight`` fill the
      first three input channels and the rest is initialised by ``extra_channel_init`` (ReStyle uses
      ``torch.randn``); with ``in_channels < 3`` (non-RGB inputs) the whole ``input_layer`` keeps its
      initialisation, as pSp does. Every ``input_layer`` / ``body`` tensor of the module must be covered by
      the file, with matching shapes.
    """
    state = read_state_dict(path, "ArcFace IR-SE50 backbone", IRSE50_HINT)
    if isinstance(module, Backbone):
        load_state_strict(module, state, str(path), what="IR-SE backbone weights", hint=IRSE50_HINT,
                          error=RuntimeError)
        return list(state)
    if not isinstance(getattr(module, "input_layer", None), nn.Sequential) or not hasattr(module, "body"):
        raise TypeError(f"{type(module).__name__} has no IR-SE 'input_layer' / 'body' to load weights into")
    state = {k: v for k, v in state.items() if k.startswith(("input_layer.", "body."))}
    in_channels = module.input_layer[0].in_channels
    if "input_layer.0.weight" in state and (skip_input_layer or in_channels != state["input_layer.0.weight"].shape[1]):
        if skip_input_layer or in_channels < state["input_layer.0.weight"].shape[1]:
            state = {k: v for k, v in state.items() if not k.startswith("input_layer.")}
        else:
            state["input_layer.0.weight"] = expand_input_conv(
                state["input_layer.0.weight"], in_channels, extra_channel_init
            )
    skipped_input = skip_input_layer or in_channels < 3
    load_state_strict(module, state, str(path), what="IR-SE backbone weights", hint=IRSE50_HINT, error=RuntimeError,
                      required=lambda k: k.startswith("body.") or (k.startswith("input_layer.") and not skipped_input))
    return list(state)
