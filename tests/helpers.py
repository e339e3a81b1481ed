"""Test helpers (importable from tests as ``helpers``)."""

from __future__ import annotations

import torch

from inversion.models import Generator


def tiny_generator(img_resolution: int = 32, seed: int = 0, **kwargs) -> Generator:
    """A small random StyleGAN2 with non-zero noise strengths and biases (so every path is exercised)."""
    kw = dict(z_dim=16, w_dim=16, img_resolution=img_resolution, n_mlp=2, channel_max=16)
    kw.update(kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(**kw)
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("noise.weight") or "bias" in name:
                    p.add_(0.1 * torch.randn_like(p))
            G.w_avg.normal_()
    return G.eval().requires_grad_(False)
