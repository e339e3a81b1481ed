"""Build an :class:`~inversion.inverter.Inverter` from the ``conf/encoder`` group and a generator.

Shared by training, evaluation and inference, so each gets the same encoder and the same loop.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .config import to_plain
from .inverter import Inverter
from .models.stylegan2 import Generator
from .tasks import InputSpec

__all__ = ["build_inverter", "encoder_config"]


def encoder_config(cfg: DictConfig | dict, generator: Generator) -> dict[str, Any]:
    """The encoder's ``{'_target_': ..., **kwargs}`` with ``num_ws`` / ``w_dim`` taken from the generator."""
    net = OmegaConf.to_container(cfg["net"], resolve=True) if isinstance(cfg, DictConfig) else dict(cfg["net"])
    net.update(num_ws=generator.num_ws, w_dim=generator.w_dim)
    return net


def build_inverter(cfg: DictConfig | dict, generator: Generator) -> Inverter:
    """Instantiate ``cfg.net`` for the generator's ``num_ws`` / ``w_dim``, load backbone weights, wrap it."""
    net_cfg = encoder_config(cfg, generator)
    encoder = instantiate(net_cfg)
    backbone = cfg.get("backbone")
    if backbone is not None and backbone.get("path"):
        instantiate(backbone, encoder)
    inverter = Inverter(
        encoder=encoder,
        generator=generator.eval().requires_grad_(False),
        num_iters=int(cfg.get("num_iters", 1)),
        residual=bool(cfg.get("residual", False)),
        start_from_latent_avg=bool(cfg.get("start_from_latent_avg", True)),
        encoder_size=to_plain(net_cfg.get("input_size", 256)),
        content_box=to_plain(cfg.get("content_box")),
        resize_mode=str(cfg.get("resize_mode", "adaptive_avg")),
        detach_steps=bool(cfg.get("detach_steps", True)),
        input_spec=InputSpec.from_dict(to_plain(cfg.get("input_spec"))),  # pSp's tasks: sketch / one-hot labels
    )
    inverter.encoder_config = net_cfg
    return inverter
