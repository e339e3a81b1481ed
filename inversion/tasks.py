"""What an encoder reads: RGB photos, 1-channel sketches or one-hot segmentation maps (pSp's image-to-image tasks).

An :class:`InputSpec` is the small, config-like description an :class:`~inversion.inverter.Inverter` carries
(``inverter.input_spec``) so callers can turn their data into the encoder's input without knowing the task:

* ``rgb`` -- 3 channels in ``value_range`` (default [-1, 1]): inversion, super-resolution, frontalization, toonify;
* ``gray`` -- 1 channel in ``value_range``: pSp's sketches (``label_nc=1``, ``input_nc=1``) are a grayscale image
  through ``ToTensor`` alone, so [0, 1] (no ``Normalize``);
* ``labels`` -- a class-index map made one-hot with ``channels`` classes (pSp's segmentation maps: ``label_nc=19``,
  ``input_nc=19``), float 0/1.

Official pSp files say which one in their ``opts`` (:meth:`InputSpec.from_official_opts`); our exports store
:meth:`InputSpec.as_dict`. Reading files (:meth:`InputSpec.read`) follows the official datasets (``convert('L')``
unless ``label_nc == 0``) except that label maps are resized with *nearest* neighbours (pSp's ``Resize((256, 256))``
is bilinear, which blends class indices at region borders of 512 px CelebAMask-HQ maps; identical at 256 px).
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps, UnidentifiedImageError

from .imageio import as_hw, resize_images
from .models.state import CheckpointError

__all__ = ["INPUT_MODES", "InputSpec", "RGB", "label_palette"]

INPUT_MODES = ("rgb", "gray", "labels")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, PIL's convert('L')


@dataclass(frozen=True)
class InputSpec:
    """How images become encoder input ``[N, channels, S, S]``."""

    mode: str = "rgb"  # 'rgb', 'gray' or 'labels' (one-hot of a class-index map)
    channels: int = 3  # encoder input channels (labels: the number of classes, pSp's label_nc)
    value_range: tuple[float, float] = (-1.0, 1.0)  # rgb / gray: the values black and white map to

    def __post_init__(self):
        if self.mode not in INPUT_MODES:
            raise ValueError(f"input mode {self.mode!r}; choose one of {INPUT_MODES}")
        want = {"rgb": 3, "gray": 1}.get(self.mode)
        if (want is not None and self.channels != want) or (self.mode == "labels" and self.channels < 2):
            raise ValueError(f"input mode {self.mode!r} with {self.channels} channels (rgb: 3, gray: 1, labels: >= 2)")
        lo, hi = (float(v) for v in self.value_range)
        if not lo < hi:
            raise ValueError(f"value_range must be (low, high) with low < high, got {self.value_range}")
        object.__setattr__(self, "value_range", (lo, hi))
        object.__setattr__(self, "channels", int(self.channels))

    # ------------------------------------------------------------------ config
    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "value_range": list(self.value_range)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> InputSpec:
        if not d:
            return cls()
        return cls(mode=d["mode"], channels=int(d["channels"]), value_range=tuple(d.get("value_range", (-1, 1))))

    @classmethod
    def from_official_opts(cls, opts: Mapping[str, Any], source: str = "checkpoint") -> InputSpec:
        """pSp's ``label_nc`` / ``input_nc``: 0 / 3 RGB in [-1, 1]; 1 / 1 a sketch in [0, 1]; N / N one-hot labels."""
        label_nc, input_nc = int(opts.get("label_nc", 0) or 0), int(opts.get("input_nc", 3))
        if label_nc == 0:
            spec, need = cls(), 3  # InferenceDataset converts to RGB; Normalize(0.5, 0.5) -> [-1, 1]
        elif label_nc == 1:
            spec, need = cls("gray", 1, (0.0, 1.0)), 1  # convert('L') + ToTensor
        else:
            spec, need = cls("labels", label_nc, (0.0, 1.0)), label_nc  # convert('L') + ToOneHot(label_nc)
        if input_nc != need:
            raise CheckpointError(f"{source}: opts label_nc={label_nc} needs input_nc={need}, got input_nc={input_nc}")
        return spec

    # ------------------------------------------------------------------ tensors
    def prepare(
        self,
        x: torch.Tensor,  # rgb: [N, 3, H, W]; gray: [N, 1 or 3, H, W]; labels: int [N, H, W] / [N, 1, H, W] or
        # one-hot float [N, channels, H, W]. Values already in value_range (gray from 3 channels: luma).
        size: int | tuple[int, int] | None = None,  # resize to size x size or (height, width) (labels: nearest,
        # before one-hot)
        resize_mode: str = "bilinear_antialias",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """The encoder input ``[N, channels, S, S]`` for this task."""
        if self.mode == "labels":
            return self._one_hot(x, size, dtype)
        if x.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got {tuple(x.shape)}")
        if self.mode == "gray" and x.shape[1] == 3:
            x = sum(w * x[:, i : i + 1] for i, w in enumerate(_LUMA))
        if x.shape[1] != self.channels:
            raise ValueError(f"{self.mode} input needs {self.channels} channel(s), got {tuple(x.shape)}")
        x = x.to(dtype)
        return x if size is None else resize_images(x, size, resize_mode)

    def _one_hot(self, x: torch.Tensor, size: int | tuple[int, int] | None, dtype: torch.dtype) -> torch.Tensor:
        if x.is_floating_point():  # already one-hot
            if x.ndim != 4 or x.shape[1] != self.channels:
                raise ValueError(f"a one-hot label input must be [N, {self.channels}, H, W], got {tuple(x.shape)}")
            return (x if size is None else resize_images(x, size, "nearest")).to(dtype)
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3:
            raise ValueError(f"a label map must be integer [N, H, W] or [N, 1, H, W], got {tuple(x.shape)}")
        hw = None if size is None else as_hw(size)
        if hw is not None and tuple(x.shape[-2:]) != hw:
            x = F.interpolate(x[:, None].float(), size=hw, mode="nearest")[:, 0].round()
        x = x.long()
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.channels):
            raise ValueError(f"label map has class indices {int(x.min())}..{int(x.max())}; this encoder takes "
                             f"0..{self.channels - 1} (label_nc={self.channels})")
        return F.one_hot(x, self.channels).permute(0, 3, 1, 2).to(dtype).contiguous()

    def display(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder inputs ``[N, channels, H, W]`` as RGB images in [-1, 1] (labels: :func:`label_palette` colours)."""
        if self.mode == "labels":
            palette = torch.from_numpy(label_palette(self.channels)).to(x.device, torch.float32) / 127.5 - 1
            return palette[x.float().argmax(1)].permute(0, 3, 1, 2)
        lo, hi = self.value_range
        x = (x.float() - lo) / (hi - lo) * 2 - 1
        return x.expand(-1, 3, -1, -1) if self.mode == "gray" else x

    # ------------------------------------------------------------------ files
    def read(self, path: str | os.PathLike) -> torch.Tensor:
        """One image file, center-cropped to a square: rgb / gray float ``[C, H, W]`` in ``value_range``, labels
        int64 ``[1, H, W]`` class indices (``L``/``I`` values, ``P`` palette indices, or gray ``RGB``).
        ``FileNotFoundError`` / ``ValueError`` name the file."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file")
        try:
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                if self.mode == "labels":
                    array = _label_array(im, path)
                else:
                    im = im.convert("RGB" if self.mode == "rgb" else "L")
                    array = None
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise ValueError(f"{path}: not a readable image file ({type(err).__name__}: {err})") from err
        if array is not None:
            t = torch.from_numpy(array.astype(np.int64))[None]
            if t.numel() and int(t.max()) >= self.channels:
                raise ValueError(f"{path}: label map has class indices {int(t.min())}..{int(t.max())}; this encoder "
                                 f"takes 0..{self.channels - 1} (label_nc={self.channels})")
        else:
            lo, hi = self.value_range
            t = TF.to_tensor(im) * (hi - lo) + lo
        h, w = t.shape[-2:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return t[:, top : top + side, left : left + side]


def _label_array(im: Image.Image, path: str) -> np.ndarray:
    if im.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        return np.asarray(im)
    if im.mode in ("RGB", "RGBA", "LA"):
        a = np.asarray(im)
        bands = a[..., :3] if im.mode != "LA" else a[..., :1]
        if (bands == bands[..., :1]).all():
            return bands[..., 0]
    raise ValueError(f"{path}: a label map must be a single-channel image of class indices (mode L, P or I), "
                     f"got mode {im.mode}")


def label_palette(n: int) -> np.ndarray:
    """``n`` distinct uint8 RGB colours for class maps: class 0 black, then evenly spread hues."""
    colors = [(0, 0, 0)]
    for k in range(1, n):
        h = (k * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.85 if k % 2 else 0.6, 0.95 if k % 3 else 0.7)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return np.asarray(colors[:n], dtype=np.uint8)


RGB = InputSpec()  # photos in [-1, 1]: the default of every inverter
