"""Sample a grid of images from a generator: ``python -m inversion sample generator=demo num_images=16``.

The command line (:mod:`inversion.cli.sample`) composes ``conf/sample.yaml`` with ``key=value`` overrides through
:func:`inversion.config.compose`; the functions here take a ready generator.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision

__all__ = ["class_labels", "sample_grid", "save_samples"]


def class_labels(G: torch.nn.Module, n: int, class_idx: int | None) -> torch.Tensor | None:
    """One-hot labels ``c`` [n, c_dim] of class ``class_idx`` for a conditional generator (NVIDIA's ``gen_images.py
    --class``); None for an unconditional one. A conditional generator without ``class_idx``, a class out of range or
    a ``class_idx`` for an unconditional generator is a ``ValueError``."""
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    if c_dim == 0:
        if class_idx is not None:
            raise ValueError(f"class_idx={class_idx} is set, but the generator is unconditional (c_dim=0)")
        return None
    if class_idx is None or not 0 <= int(class_idx) < c_dim:
        raise ValueError(f"the generator is conditional (c_dim={c_dim}): set class_idx to a class in [0, {c_dim}) "
                         f"(got {class_idx})")
    return torch.nn.functional.one_hot(torch.full((n,), int(class_idx)), c_dim).to(G.w_avg)


def sample_grid(
    G: torch.nn.Module,
    num_images: int,
    seed: int = 0,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    class_idx: int | None = None,  # Conditional generators: the class of every sample (one-hot c); else None.
) -> torch.Tensor:
    """Images [num_images, 3, R, R] in [-1, 1] (clamped) for z drawn from ``seed``."""
    device = G.w_avg.device
    c = class_labels(G, num_images, class_idx)
    z = torch.randn(num_images, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        if c is None:
            ws = G.mapping(z, truncation_psi=truncation_psi)
        else:
            ws = G.mapping(z, c, truncation_psi=truncation_psi)
        return G.synthesis(ws, noise_mode=noise_mode).clamp(-1, 1)


def save_samples(
    G: torch.nn.Module,
    out: str | os.PathLike,  # Image file (format from the suffix); parent folders are created.
    num_images: int = 16,
    seed: int = 0,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    class_idx: int | None = None,  # Conditional generators: the class of every sample (one-hot c).
) -> Path:
    """:func:`sample_grid` written as one square-ish grid (``ceil(sqrt(num_images))`` per row); returns the path."""
    if num_images < 1:
        raise ValueError(f"num_images={num_images}: need at least one image")
    imgs = sample_grid(G, num_images, seed, truncation_psi, noise_mode, class_idx)
    path = Path(out).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    torchvision.utils.save_image(imgs * 0.5 + 0.5, path, nrow=int(num_images**0.5 + 0.999))
    return path


if __name__ == "__main__":  # deprecated spelling of: python -m inversion sample
    from inversion.cli import deprecated_alias

    raise SystemExit(deprecated_alias("sample", "inversion.sample"))
