"""Sample a grid of images from a generator: ``python -m inversion sample generator=demo num_images=16``.

The command line (:mod:`inversion.cli.sample`) composes ``conf/sample.yaml`` with ``key=value`` overrides through
:func:`inversion.config.compose`; the functions here take a ready generator.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision

__all__ = ["sample_grid", "save_samples"]


def sample_grid(
    G: torch.nn.Module,
    num_images: int,
    seed: int = 0,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
) -> torch.Tensor:
    """Images [num_images, 3, R, R] in [-1, 1] (clamped) for z drawn from ``seed``."""
    device = G.w_avg.device
    z = torch.randn(num_images, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        ws = G.mapping(z, truncation_psi=truncation_psi)
        return G.synthesis(ws, noise_mode=noise_mode).clamp(-1, 1)


def save_samples(
    G: torch.nn.Module,
    out: str | os.PathLike,  # Image file (format from the suffix); parent folders are created.
    num_images: int = 16,
    seed: int = 0,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
) -> Path:
    """:func:`sample_grid` written as one square-ish grid (``ceil(sqrt(num_images))`` per row); returns the path."""
    if num_images < 1:
        raise ValueError(f"num_images={num_images}: need at least one image")
    imgs = sample_grid(G, num_images, seed, truncation_psi, noise_mode)
    path = Path(out).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    torchvision.utils.save_image(imgs * 0.5 + 0.5, path, nrow=int(num_images**0.5 + 0.999))
    return path


if __name__ == "__main__":  # deprecated spelling of: python -m inversion sample
    from inversion.cli import deprecated_alias

    raise SystemExit(deprecated_alias("sample", "inversion.sample"))
