"""The transforms of pSp's image-to-image tasks (pixel2style2pixel ``5cfff38``: ``configs/transforms_config.py``,
``datasets/augmentations.py``), as reusable transform classes for ``conf/data`` specs.

* :class:`ToOneHot` -- a class-index map (PIL ``L``) -> float one-hot ``[label_nc, H, W]``; by default resized first
  with PIL *bilinear* like pSp's ``Resize((256, 256))`` on the index image (class indices are blended at region
  borders of a 512 px map; ``interpolation="nearest"`` keeps them). segmentation -> face.
* :class:`ToGrayTensor` -- a sketch: ``convert('L')`` + ``Resize`` + ``ToTensor``, ``[1, H, W]`` in [0, 1], *no*
  ``Normalize`` (pSp's ``SketchToImageTransforms``). sketch -> face.
* :class:`BicubicDownSample` -- pSp's separable Keys-cubic (a = -0.5) low-pass + stride-``factor`` subsampling with
  reflect padding. :class:`BilinearResize` draws one factor per sample (pSp: ``np.random.choice(factors)``; here a
  seedable torch RNG), degrades a PIL image with it, clamps to [0, 1] and truncates to 8 bits (``ToPILImage``).
  super-resolution: ``Resize(256) -> BilinearResize -> Resize(256) -> ToTensor -> Normalize``.
* :class:`PairedHorizontalFlip` -- one coin for a (target, source) pair: the *shared* flip of a
  :class:`~inversion.data.paired.PairedDataset` ``joint_transform`` (frontalization instead flips target and source
  independently, with a ``RandomHorizontalFlip`` in each side's transform).

Randomness (:class:`BilinearResize`, :class:`PairedHorizontalFlip`): ``seed=None`` draws from torch's global RNG, like
torchvision's random transforms -- PyTorch seeds it per ``DataLoader`` worker and epoch from the main process's RNG,
which ``pl.seed_everything`` seeds, so training runs are reproducible and workers differ. ``seed=<int>`` gives the
transform its own ``torch.Generator`` (created on first use in each process; a ``DataLoader`` worker mixes its
worker id into the seed, so workers do not repeat one another).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import get_worker_info

from ..imageio import as_hw

__all__ = ["BicubicDownSample", "BilinearResize", "PairedHorizontalFlip", "ToGrayTensor", "ToOneHot",
           "keys_cubic", "parse_factors"]

_PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


def _size2(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``size`` (an int or ``[h, w]``) as ``(h, w)``; None stays None."""
    return None if size is None else as_hw(size)


class _Seeded:
    """A transform's source of randomness: torch's global RNG (``seed=None``) or its own, per-process generator."""

    def __init__(self, seed: int | None) -> None:
        self.seed = None if seed is None else int(seed)
        self._gen: torch.Generator | None = None
        self._gen_key: tuple[int, int] | None = None

    def _generator(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        info = get_worker_info()
        key = (self.seed, -1 if info is None else info.id)
        if self._gen is None or self._gen_key != key:
            self._gen = torch.Generator().manual_seed(self.seed if info is None else self.seed * 1_000_003 + info.id)
            self._gen_key = key
        return self._gen

    def __getstate__(self) -> dict[str, Any]:  # a torch.Generator's state travels badly; rebuild it on first use
        return {**self.__dict__, "_gen": None, "_gen_key": None}

    def _randint(self, n: int) -> int:
        return int(torch.randint(n, (), generator=self._generator()))

    def _rand(self) -> float:
        return float(torch.rand((), generator=self._generator()))


# ---------------------------------------------------------------------------------------------- segmentation
class ToOneHot:
    """A class-index map -> float32 one-hot ``[label_nc, H, W]`` (0 / 1).

    Input: a PIL image whose values are class indices (``L``, ``I``; a ``P`` image gives its palette indices), or an
    integer ``[H, W]`` array / tensor. ``size`` (int or ``[h, w]``) resizes the *index image* first with PIL,
    ``interpolation="bilinear"`` by default: pSp's ``SegToImageTransforms`` apply ``Resize((256, 256))`` (PIL
    bilinear) before ``ToOneHot``, which averages neighbouring indices at region borders when the map is not
    already that size (CelebAMask-HQ maps are 512 px: indices 1 and 17 meet as 9); the default reproduces that for
    training fidelity. ``interpolation="nearest"`` keeps every pixel a real class (the clean choice for new
    models). An index ``>= label_nc`` is a ``ValueError`` (pSp: ``IndexError`` from numpy).
    """

    def __init__(self, label_nc: int, size: int | Sequence[int] | None = None, interpolation: str = "bilinear"):
        if int(label_nc) < 1:
            raise ValueError(f"label_nc must be >= 1, got {label_nc}")
        if interpolation not in _PIL_FILTERS:
            raise ValueError(f"interpolation {interpolation!r}; choose one of {sorted(_PIL_FILTERS)}")
        self.label_nc = int(label_nc)
        self.size = _size2(size)
        self.interpolation = interpolation

    def __call__(self, labels: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(labels, Image.Image):
            im = labels
            if im.mode == "P":  # PIL resizes palette images with nearest whatever the filter: use the indices
                im = Image.fromarray(np.asarray(im))
            elif im.mode not in ("L", "I", "I;16"):
                raise ValueError(f"a label map must be a single-channel image of class indices, got mode {im.mode}")
            if self.size is not None and im.size != (self.size[1], self.size[0]):
                im = im.resize((self.size[1], self.size[0]), _PIL_FILTERS[self.interpolation])
            index = torch.from_numpy(np.array(im, dtype=np.int64))
        else:
            index = torch.as_tensor(np.asarray(labels)).long()
            if self.size is not None and tuple(index.shape[-2:]) != self.size:
                raise ValueError("resizing a label array is not supported; give a PIL image or size=None")
        if index.ndim != 2:
            raise ValueError(f"a label map must be [H, W], got {tuple(index.shape)}")
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= self.label_nc:
            raise ValueError(f"label map has class indices {lo}..{hi}, outside 0..{self.label_nc - 1} "
                             f"(label_nc={self.label_nc})")
        return F.one_hot(index, self.label_nc).permute(2, 0, 1).float().contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label_nc={self.label_nc}, size={self.size}, interpolation={self.interpolation})"


# ---------------------------------------------------------------------------------------------- sketch
class ToGrayTensor:
    """A sketch -> ``[1, H, W]`` in [0, 1]: ``convert('L')``, PIL-bilinear resize to ``size`` (int or ``[h, w]``;
    None keeps it), ``ToTensor`` -- no ``Normalize`` (pSp's ``SketchToImageTransforms.transform_source``: white
    paper is 1)."""

    def __init__(self, size: int | Sequence[int] | None = None) -> None:
        self.size = _size2(size)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        im = image if image.mode == "L" else image.convert("L")
        if self.size is not None and im.size != (self.size[1], self.size[0]):
            im = im.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
        return TF.to_tensor(im)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


# ---------------------------------------------------------------------------------------------- super-resolution
def keys_cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel: ``(a+2)|x|^3 - (a+3)|x|^2 + 1`` on ``|x| <= 1``, ``a|x|^3 - 5a|x|^2 + 8a|x|
    - 4a`` on ``1 < |x| < 2``, else 0."""
    t = x.abs()
    inner = (a + 2.0) * t.pow(3.0) - (a + 3.0) * t.pow(2.0) + 1
    outer = a * t.pow(3) - 5.0 * a * t.pow(2.0) + 8.0 * a * t - 4.0 * a
    return torch.where(t <= 1.0, inner, torch.where(t < 2.0, outer, torch.zeros_like(t)))


class BicubicDownSample(torch.nn.Module):
    """pSp's ``augmentations.BicubicDownSample``: downscale ``[N, C, H, W]`` (or ``[C, H, W]``) by an integer
    ``factor``.

    A separable kernel of ``4 * factor`` taps of :func:`keys_cubic` (a = -0.5) at ``(i - 2 * factor + 0.5) /
    factor``, normalised to sum 1 (float32, as pSp); ``padding`` (reflect) of ``(3 * factor) // 2`` before and the
    rest of ``3 * factor`` after; a stride-``factor`` convolution over rows, then over columns: ``H / factor`` rows
    out. Factor 1 is a half-pixel-shifted 4-tap blur, not the identity. Any channel count (pSp's is fixed at 3).
    """

    def __init__(self, factor: int = 4, padding: str = "reflect") -> None:
        super().__init__()
        if int(factor) < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        self.factor = int(factor)
        self.padding = padding
        size = 4 * self.factor
        taps = (torch.arange(size, dtype=torch.float32) - float(size // 2) + 0.5) / self.factor
        k = keys_cubic(taps)
        self.register_buffer("kernel", k / k.sum(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.ndim == 3
        if squeeze:
            x = x[None]
        if x.ndim != 4:
            raise ValueError(f"expected [N, C, H, W] or [C, H, W], got {tuple(x.shape)}")
        f, c = self.factor, x.shape[1]
        pad = 3 * f  # filter length 4f minus the stride f
        before, after = pad // 2, pad - pad // 2
        k = self.kernel.to(device=x.device, dtype=x.dtype)
        x = F.pad(x, (0, 0, before, after), mode=self.padding)
        x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(f, 1), groups=c)
        x = F.pad(x, (before, after, 0, 0), mode=self.padding)
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, f), groups=c)
        return x[0] if squeeze else x

    def extra_repr(self) -> str:
        return f"factor={self.factor}, padding={self.padding!r}"


def parse_factors(factors: Sequence[int] | str | int) -> tuple[int, ...]:
    """``[1, 2, 4]``, ``"1,2,4"`` (pSp's ``--resize_factors``) or ``8`` -> ``(1, 2, 4)`` / ``(8,)``."""
    if isinstance(factors, str):
        items: Sequence[Any] = [s for s in factors.split(",") if s.strip()]
    elif isinstance(factors, int):
        items = [factors]
    else:
        items = list(factors)
    out = tuple(int(f) for f in items)
    if not out or min(out) < 1:
        raise ValueError(f"resize factors must be positive integers, got {factors!r}")
    return out


class BilinearResize(_Seeded):
    """pSp's ``augmentations.BilinearResize`` (named so there; the filter is :class:`BicubicDownSample`): a PIL
    image -> a PIL image ``factor`` times smaller, one factor drawn uniformly from ``factors`` per call (pSp:
    ``np.random.choice(factors)``; duplicates weigh more, as there).

    ``ToTensor`` -> :class:`BicubicDownSample` -> ``clamp(0, 1)`` -> 8 bits by ``* 255`` and truncation (pSp's
    ``ToPILImage``). Sides must be multiples of every factor (pSp: 256 after its first ``Resize``). ``seed``: see
    the module docstring. :meth:`apply` uses a given factor (pSp's inference scripts take a single one).
    """

    def __init__(self, factors: Sequence[int] | str | int = (1, 2, 4, 8, 16, 32), seed: int | None = None) -> None:
        super().__init__(seed)
        self.factors = parse_factors(factors)
        self._down: dict[int, BicubicDownSample] = {}

    def draw(self) -> int:
        """One factor, uniformly over ``factors``."""
        return self.factors[self._randint(len(self.factors))]

    def apply(self, image: Image.Image, factor: int) -> Image.Image:
        w, h = image.size
        if h % factor or w % factor:
            raise ValueError(f"image size {w}x{h} is not a multiple of the resize factor {factor}")
        down = self._down.get(factor)
        if down is None:
            down = self._down[factor] = BicubicDownSample(factor)
        with torch.no_grad():
            low = down(TF.to_tensor(image)).clamp(0, 1)
        return TF.to_pil_image(low.mul(255).to(torch.uint8))  # truncation, like ToPILImage on floats

    def __call__(self, image: Image.Image) -> Image.Image:
        return self.apply(image, self.draw())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(factors={list(self.factors)}, seed={self.seed})"


# ---------------------------------------------------------------------------------------------- pairs
class PairedHorizontalFlip(_Seeded):
    """``(target, source) -> (target, source)``, both mirrored with probability ``p`` by one draw (PIL images or
    ``[..., H, W]`` tensors): the shared flip for a :class:`~inversion.data.paired.PairedDataset` whose source and
    target are pixel-aligned (a source made from the target file, a label map, a sketch)."""

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(seed)
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, target: Any, source: Any) -> tuple[Any, Any]:
        if self.p > 0 and self._rand() < self.p:
            return TF.hflip(target), TF.hflip(source)
        return target, source

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, seed={self.seed})"
