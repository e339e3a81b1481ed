"""Images sampled from a generator by seed: the embedded demo's data, with known latents.

Seed ``s`` always gives the same image on any machine: ``z = randn(z_dim)`` from ``torch.Generator``
seeded with ``s``, ``ws = G.mapping(z, truncation_psi)``, ``image = G.synthesis(ws, noise_mode='const')``.
Images are rendered once, up front, in batches (the demo generator is small), and kept in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from ..imageio import resize_images
from ..models.stylegan2 import Generator
from ..models.stylegan2_cond import require_unconditional
from .splits import read_split

__all__ = ["SeedDataset", "render_seeds"]


@torch.no_grad()
def render_seeds(
    G: Generator,
    seeds: Sequence[int],
    truncation_psi: float = 1.0,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [N, 3, R, R] clamped to [-1, 1], ws [N, num_ws, w_dim])`` for the given seeds."""
    require_unconditional(G, "render_seeds (generated training data)")
    device = G.w_avg.device
    z = torch.stack([torch.randn(G.z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    images, ws_all = [], []
    for i in range(0, len(seeds), batch_size):
        ws = G.mapping(z[i : i + batch_size].to(device), truncation_psi=truncation_psi)
        images.append(G.synthesis(ws, noise_mode="const").clamp(-1, 1).cpu())
        ws_all.append(ws.cpu())
    return torch.cat(images), torch.cat(ws_all)


class SeedDataset(Dataset):
    """Generator samples by seed: items ``{"image": [3, S, S], "ws": [num_ws, w_dim], "id": str}``."""

    def __init__(
        self,
        generator: Generator,  # The (frozen) generator to sample from.
        seeds: Sequence[int] | str,  # Seeds, or a split name / file of seeds (e.g. "demo_train").
        image_size: int | None = None,  # Resize to this size (None: generator resolution).
        resize_mode: str = "adaptive_avg",  # How images are resized (see inversion.inverter.RESIZE_MODES).
        truncation_psi: float = 1.0,  # Truncation of the sampled latents.
        render_batch_size: int = 64,  # Seeds rendered together (1: an image's bits never depend on the other seeds).
    ):
        if isinstance(seeds, str):
            seeds = [int(s) for s in read_split(seeds)]
        if len(seeds) == 0:
            raise ValueError("SeedDataset needs at least one seed")
        self.seeds = [int(s) for s in seeds]
        images, self.ws = render_seeds(generator, self.seeds, truncation_psi, batch_size=render_batch_size)
        if image_size is not None:
            images = resize_images(images, image_size, resize_mode)
        self.images = images

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "ws": self.ws[i], "id": str(self.seeds[i])}
