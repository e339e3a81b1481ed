"""Sample a grid of images from a configured generator: ``python -m inversion.sample generator=demo``."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import torch
import torchvision
from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)
CONF = str(Path(__file__).resolve().parents[1] / "conf")


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


@hydra.main(version_base="1.3", config_path=CONF, config_name="sample")
def main(cfg: DictConfig) -> None:
    G = instantiate(cfg.generator).to(cfg.device)
    imgs = sample_grid(G, cfg.num_images, cfg.seed, cfg.truncation_psi, cfg.noise_mode)
    out = Path(cfg.out).resolve()
    torchvision.utils.save_image(imgs * 0.5 + 0.5, out, nrow=int(cfg.num_images**0.5 + 0.999))
    log.info("wrote %d samples (%d px, num_ws=%d) to %s", cfg.num_images, G.img_resolution, G.num_ws, out)


if __name__ == "__main__":
    main()
