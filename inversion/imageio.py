"""The one image / IO toolkit: resizing, 8-bit quantisation, tensor <-> PIL, grids and atomic file writes.

Images are float tensors in [-1, 1]: batches [N, 3, H, W], single images [3, H, W]. Everything that writes a file
goes through :func:`atomic_save` (write a temporary file beside the target, then rename), so a killed run never
leaves a torn file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "RESIZE_MODES",
    "atomic_save",
    "atomic_write_json",
    "atomic_write_text",
    "from_pil",
    "image_grid",
    "quantize",
    "read_rgb",
    "resize_images",
    "save_grid",
    "save_strip",
    "stack_rows",
    "to_pil",
    "to_uint8",
]

RESIZE_MODES = ("adaptive_avg", "area", "bilinear_antialias", "bilinear", "bicubic_antialias", "nearest")


# ----------------------------------------------------------------------------- tensors
def as_hw(size: int | Sequence[int], what: str = "size") -> tuple[int, int]:
    """``(height, width)`` of a size given as one side (square) or ``[height, width]``; ValueError naming ``what``."""
    hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(v) for v in size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"{what} must be one side or (height, width), positive, got {size!r}")
    return hw


def resize_images(
    x: torch.Tensor,  # [N, C, H, W]
    size: int | Sequence[int],  # Output size: one side (square) or (height, width).
    mode: str = "adaptive_avg",  # One of RESIZE_MODES; 'adaptive_avg' is pSp's face_pool.
) -> torch.Tensor:
    """Resize images with an explicit, named method (the "influence of interpolating" is a parameter)."""
    hw = as_hw(size)
    if tuple(x.shape[-2:]) == hw:
        return x
    if mode == "adaptive_avg":
        return F.adaptive_avg_pool2d(x, hw)
    if mode == "area":
        return F.interpolate(x, size=hw, mode="area")
    if mode in ("bilinear_antialias", "bicubic_antialias"):
        return F.interpolate(x, size=hw, mode=mode.split("_")[0], align_corners=False, antialias=True)
    if mode == "bilinear":
        return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
    if mode == "nearest":
        return F.interpolate(x, size=hw, mode="nearest")
    raise ValueError(f"unknown resize mode {mode!r}; choose one of {RESIZE_MODES}")


def quantize(x: torch.Tensor, enabled: bool = True) -> torch.Tensor:
    """Clamp to [-1, 1] and, if ``enabled``, round to 8-bit levels (as metrics computed on saved PNG files)."""
    x = x.float().clamp(-1, 1)
    return torch.round((x + 1) * 127.5) / 127.5 - 1 if enabled else x


def to_uint8(
    images: torch.Tensor,  # [N, 3, H, W] float in [-1, 1] (values outside are clipped).
) -> np.ndarray:
    """-> uint8 [N, H, W, 3] numpy array (``round((x + 1) * 127.5)``)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a [N, 3, H, W] tensor, got {getattr(images, 'shape', type(images))}")
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).cpu().numpy()


# ----------------------------------------------------------------------------- PIL
def to_pil(
    image: torch.Tensor,  # [3, H, W] float in [-1, 1].
) -> Image.Image:
    """-> 8-bit RGB PIL image (:func:`to_uint8` of one image)."""
    return Image.fromarray(to_uint8(image[None])[0], "RGB")


def from_pil(image: Image.Image, resolution: int | None = None) -> torch.Tensor:
    """PIL RGB image -> float tensor [3, H, W] in [-1, 1] (optionally resized to a square with Lanczos)."""
    if resolution is not None and image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return TF.to_tensor(image).mul_(2.0).sub_(1.0)


def read_rgb(path: str | os.PathLike) -> Image.Image:
    """A user's image file as RGB, its EXIF orientation applied. ``FileNotFoundError`` / ``ValueError`` name the
    file when it is missing or not a readable image."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: not a readable image file ({type(err).__name__}: {err})") from err


# ----------------------------------------------------------------------------- grids
def image_grid(
    images: torch.Tensor,  # [N, 3, H, W] float in [-1, 1].
    nrow: int = 8,  # Images per row; the grid has ceil(N / nrow) rows and min(N, nrow) columns.
    *,
    padding: int = 2,  # Pixels between images and around the border.
    pad_value: int = 255,  # Gray level (0-255) of the padding.
) -> np.ndarray:
    """Tile images row-major into one uint8 [rows * (H + p) + p, cols * (W + p) + p, 3] array."""
    tiles = to_uint8(images)
    if nrow < 1 or padding < 0:
        raise ValueError(f"need nrow >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    n, h, w, _ = tiles.shape
    cols = min(n, nrow)
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, 3), pad_value, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        y = padding + (i // cols) * (h + padding)
        x = padding + (i % cols) * (w + padding)
        grid[y : y + h, x : x + w] = tile
    return grid


def save_grid(
    images: torch.Tensor,  # [N, 3, H, W] float in [-1, 1].
    path: str | os.PathLike,  # Output image (format from the suffix, e.g. .png / .jpg).
    nrow: int = 8,  # Images per row.
    *,
    padding: int = 2,  # Pixels between images and around the border.
) -> Path:
    """Write :func:`image_grid` to ``path`` (parent folders are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images, nrow, padding=padding), "RGB").save(path)
    return path


def save_strip(images: Sequence[torch.Tensor], path: str | os.PathLike, size: int = 128) -> Path:
    """Save images [3, H, W] side by side, each resized to ``size`` px (area/box filter), as one PNG."""
    tiles = [resize_images(img[None].float(), size, "area" if img.shape[-1] >= size else "bilinear")[0]
             for img in images]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(torch.cat(tiles, dim=-1)).save(path)
    return path


def stack_rows(
    rows: Sequence[Sequence[Image.Image]],  # Rows of PIL tiles (rows may differ in length and tile sizes).
    path: str | os.PathLike | None = None,  # Also save the grid here (parent folders are created).
    pad: int = 2,  # White pixels between tiles and between rows.
) -> Image.Image | None:
    """Paste rows of PIL images into one white-padded grid, left-aligned; ``None`` for no rows."""
    rows = [list(r) for r in rows if len(r)]
    if not rows:
        return None
    widths = [sum(t.width for t in r) + pad * (len(r) - 1) for r in rows]
    heights = [max(t.height for t in r) for r in rows]
    grid = Image.new("RGB", (max(widths), sum(heights) + pad * (len(rows) - 1)), (255, 255, 255))
    y = 0
    for row, h in zip(rows, heights):
        x = 0
        for tile in row:
            grid.paste(tile, (x, y))
            x += tile.width + pad
        y += h + pad
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
    return grid


# ----------------------------------------------------------------------------- atomic writes
def atomic_save(
    obj: Any,
    path: str | os.PathLike,
    writer: Callable[[Any, Path], Any] | None = None,  # writer(obj, temporary path); None: torch.save.
) -> Path:
    """Write ``obj`` to a temporary file in the same folder, then rename: a kill never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        (writer or torch.save)(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_save` for a UTF-8 text file."""
    return atomic_save(text, path, lambda t, p: p.write_text(t, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """:func:`atomic_save` for an indented JSON file."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
