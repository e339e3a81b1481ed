"""Small output helpers for edits: image grids and animated GIFs from [-1, 1] image tensors (Pillow only)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..imageio import to_uint8

__all__ = ["read_tensor_file", "save_frames_gif"]


def save_frames_gif(
    images: torch.Tensor,  # Frames [T, 3, H, W] float in [-1, 1].
    path: str | os.PathLike,  # Output .gif (parent folders are created).
    *,
    duration_ms: int = 80,  # Display time of each frame (GIF stores units of 10 ms).
    loop: int = 0,  # Number of repeats, 0 = forever.
) -> Path:
    """Write an animated GIF (one frame per image, each quantised to its own 256-colour palette).

    Pillow merges consecutive *identical* frames into one longer frame, so a GIF of T frames reads back with
    fewer frames when some neighbours are equal (e.g. an interpolation between equal latents); the total
    duration is kept.
    """
    frames = [Image.fromarray(a, "RGB") for a in to_uint8(images)]
    if not frames:
        raise ValueError("need at least one frame")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(
        path, format="GIF", save_all=True, append_images=frames[1:], duration=int(duration_ms), loop=loop,
        optimize=False,
    )
    return path


TENSOR_SUFFIXES = (".npy", ".pt", ".pth")


def read_tensor_file(
    path: str | os.PathLike,  # .npy (numpy array, no pickles) or .pt / .pth (torch.load with weights_only=True).
    what: str = "tensor",  # What the file holds, for the error messages ("direction", "latent").
    key: str | None = None,  # A stored dict's entry to use; None: the dict must hold exactly one tensor.
) -> torch.Tensor:
    """A real-valued tensor from a file, as float32. ``FileNotFoundError`` for a missing file, ``ValueError``
    naming the file for an unknown suffix, an unreadable file, a dict without the tensor, or a non-real dtype."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in TENSOR_SUFFIXES:
        raise ValueError(f"{path}: unsupported {what} format {suffix!r} (expected one of {TENSOR_SUFFIXES})")
    try:
        if suffix == ".npy":
            obj = np.load(path, allow_pickle=False)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # numpy / pickle raise many different types for corrupt files
        raise ValueError(f"{path}: could not read {what} ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict):
        if key is not None:
            if not isinstance(obj.get(key), torch.Tensor):
                raise ValueError(f"{path}: expected a tensor or a dict with a {key!r} tensor, got keys {list(obj)}")
            obj = obj[key]
        else:
            tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
            if len(tensors) != 1:
                raise ValueError(f"{path}: expected a dict with exactly one tensor, got keys {list(obj)}")
            obj = tensors[0]
    if isinstance(obj, np.ndarray):
        if not (np.issubdtype(obj.dtype, np.floating) or np.issubdtype(obj.dtype, np.integer)):
            raise ValueError(f"{path}: {what} must be a real numeric array, got dtype {obj.dtype}")
        obj = torch.from_numpy(np.ascontiguousarray(obj))
    if not isinstance(obj, torch.Tensor):
        raise ValueError(f"{path}: expected a tensor or array, got {type(obj).__name__}")
    if obj.is_complex() or obj.dtype == torch.bool:
        raise ValueError(f"{path}: {what} must be real-valued, got dtype {obj.dtype}")
    return obj.detach().to(torch.float32)
