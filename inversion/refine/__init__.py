"""Per-image optimization refinement (issue 6): :func:`refine` and the config builder :func:`build_refiner`.

``conf/refine/<name>.yaml`` is turned into a callable ``(generator, target, ws_init=None) -> RefineResult``
by :func:`build_refiner` (``None`` for ``enabled: false``). Config keys:

* ``enabled``: false gives no refiner (``conf/refine/none.yaml``);
* ``losses``: ``{name: {type: mse | vgg | lpips | id, weight: float, net: ..., fallback: mse}}``.
  ``vgg`` (Image2StyleGAN's :class:`~inversion.losses.VGGFeatureLoss`) and ``lpips``
  (:class:`~inversion.losses.LPIPSLoss`) load the torchvision VGG16 (or AlexNet for ``net: alex``) ``features.*``
  weights from the top-level ``vgg_weights`` (``alex_weights``) key; ``id`` (``1 - cos`` of face embeddings,
  ``net: irse50 | curricularface | facenet``, optional ``kwargs``) loads ``id_weights``. When that key is null the
  term is skipped with a warning, or replaced by MSE with the same weight when ``fallback: mse``;
* every other key (``space``, ``num_steps``, ``lr``, ``noise_regularize``, ``lr_rampup``, ...) is passed to
  :func:`refine` as a keyword argument.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .optimize import SPACES, RefineResult, RefineSnapshot, karras_lr, noise_regularization, refine

__all__ = ["DEFAULT_NUM_STEPS", "SPACES", "RefineResult", "RefineSnapshot", "Refiner", "build_losses", "build_refiner",
           "karras_lr", "noise_regularization", "refine"]

DEFAULT_NUM_STEPS = inspect.signature(refine).parameters["num_steps"].default
_WEIGHT_KEYS = ("vgg_weights", "alex_weights", "id_weights")


def _to_dict(cfg: Any) -> dict:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    return dict(cfg)


def build_losses(cfg: Mapping[str, Any]) -> dict[str, tuple[float, nn.Module]]:
    """The ``losses`` entry of a refine config as ``{name: (weight, module)}`` (see the module docstring)."""
    from ..losses import LPIPSLoss, MSELoss, VGGFeatureLoss

    out: dict[str, tuple[float, nn.Module]] = {}
    for name, spec in (cfg.get("losses") or {}).items():
        kind, weight = spec.get("type", "mse"), float(spec.get("weight", 1.0))
        if weight == 0:
            continue
        if kind == "mse":
            out[name] = (weight, MSELoss())
            continue
        if kind not in ("vgg", "lpips", "id"):
            raise ValueError(f"refine loss {name!r}: unknown type {kind!r} (mse, vgg, lpips or id)")
        net = spec.get("net", "irse50" if kind == "id" else "vgg")
        key = "id_weights" if kind == "id" else "alex_weights" if (kind == "lpips" and net == "alex") else "vgg_weights"
        path = cfg.get(key)
        if path is None:
            fallback = spec.get("fallback")
            msg = f"refine loss {name!r} ({kind}) needs `{key}`, which is null"
            if fallback == "mse":
                warnings.warn(f"{msg}: using MSE with weight {weight} instead", stacklevel=2)
                out[name] = (weight, MSELoss())
            else:
                warnings.warn(f"{msg}: skipping this term", stacklevel=2)
            continue
        if kind == "id":
            from ..evaluation.metrics import build_id_net

            out[name] = (weight, build_id_net(net, path, **(spec.get("kwargs") or {})))
        elif kind == "vgg":
            out[name] = (weight, VGGFeatureLoss.from_pretrained(path))
        else:
            out[name] = (weight, LPIPSLoss.from_pretrained(path, net=net))
    if not out:
        raise ValueError("the refine config leaves no loss term")
    return out


class Refiner(nn.Module):
    """A configured refinement: loss networks (submodules, so ``.to(device)`` moves them) and the keyword
    arguments of :func:`refine`. ``refiner(generator, target, ws_init=None, **overrides) -> RefineResult``."""

    def __init__(
        self,
        *,
        losses: Mapping[str, tuple[float, nn.Module]],  # name -> (weight, module), see build_losses
        **kwargs: Any,  # every other keyword argument of refine() (space, num_steps, lr, ...)
    ):
        super().__init__()
        self.loss_modules = nn.ModuleDict({k: m for k, (_, m) in losses.items()})
        self.loss_weights = {k: float(w) for k, (w, _) in losses.items()}
        self.kwargs = dict(kwargs)

    @property
    def num_steps(self) -> int:
        return int(self.kwargs.get("num_steps", DEFAULT_NUM_STEPS))

    def forward(self, generator, target: torch.Tensor, ws_init: torch.Tensor | None = None,
                **overrides: Any) -> RefineResult:
        losses = {k: (w, self.loss_modules[k]) for k, w in self.loss_weights.items()}
        return refine(generator, target, ws_init=ws_init, losses=losses, **{**self.kwargs, **overrides})

    def train(self, mode: bool = True) -> Refiner:  # loss networks stay in eval mode
        return super().train(False)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())


def build_refiner(cfg: Any, device: torch.device | str | None = None) -> Refiner | None:
    """``conf/refine/*.yaml`` (dict or DictConfig) -> a :class:`Refiner` (its loss networks on ``device``), or
    ``None`` when ``enabled`` is false."""
    cfg = _to_dict(cfg)
    if not cfg.get("enabled", True):
        return None
    kwargs = {k: v for k, v in cfg.items() if k not in ("enabled", "losses", "name", *_WEIGHT_KEYS)}
    unknown = set(kwargs) - set(inspect.signature(refine).parameters)
    if unknown:
        raise ValueError(f"refine config: unknown keys {sorted(unknown)}")
    refiner = Refiner(losses=build_losses(cfg), **kwargs).eval()
    return refiner if device is None else refiner.to(device)
