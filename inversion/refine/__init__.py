"""Per-image optimization refinement (issue 6): :func:`refine` and the config builder :func:`build_refiner`.

``conf/refine/<name>.yaml`` is turned into a callable ``(generator, target, ws_init=None) -> RefineResult``
by :func:`build_refiner` (``None`` for ``enabled: false``). Config keys:

* ``enabled``: false gives no refiner (``conf/refine/none.yaml``);
* ``losses``: ``{name: {type: mse | vgg | lpips, weight: float, net: vgg | alex (lpips only), fallback: mse}}``.
  ``vgg`` (Image2StyleGAN's :class:`~inversion.losses.VGGFeatureLoss`) and ``lpips``
  (:class:`~inversion.losses.LPIPSLoss`) load the torchvision VGG16 (or AlexNet for ``net: alex``) ``features.*``
  weights from the top-level ``vgg_weights`` (``alex_weights``) key; when that is null the term is skipped with
  a warning, or replaced by MSE with the same weight when ``fallback: mse``;
* every other key (``space``, ``num_steps``, ``lr``, ``noise_regularize``, ``lr_rampup``, ...) is passed to
  :func:`refine` as a keyword argument.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from torch import nn

from .optimize import SPACES, RefineResult, karras_lr, noise_regularization, refine

__all__ = ["SPACES", "RefineResult", "build_losses", "build_refiner", "karras_lr", "noise_regularization", "refine"]

_WEIGHT_KEYS = ("vgg_weights", "alex_weights")


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
        if kind not in ("vgg", "lpips"):
            raise ValueError(f"refine loss {name!r}: unknown type {kind!r} (mse, vgg or lpips)")
        net = spec.get("net", "vgg")
        key = "alex_weights" if (kind == "lpips" and net == "alex") else "vgg_weights"
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
        if kind == "vgg":
            out[name] = (weight, VGGFeatureLoss.from_pretrained(path))
        else:
            out[name] = (weight, LPIPSLoss.from_pretrained(path, net=net))
    if not out:
        raise ValueError("the refine config leaves no loss term")
    return out


def build_refiner(cfg: Any, device: torch.device | str | None = None) -> Callable[..., RefineResult] | None:
    """``conf/refine/*.yaml`` (dict or DictConfig) -> ``fn(generator, target, ws_init=None, **overrides)``
    returning a :class:`RefineResult`, or ``None`` when ``enabled`` is false. Loss networks go to ``device``."""
    cfg = _to_dict(cfg)
    if not cfg.get("enabled", True):
        return None
    losses = build_losses(cfg)
    if device is not None:
        losses = {k: (w, m.to(device)) for k, (w, m) in losses.items()}
    kwargs = {k: v for k, v in cfg.items() if k not in ("enabled", "losses", "name", *_WEIGHT_KEYS)}
    fn = partial(refine, losses=losses, **kwargs)

    def refiner(generator, target: torch.Tensor, ws_init: torch.Tensor | None = None, **overrides) -> RefineResult:
        return fn(generator, target, ws_init=ws_init, **overrides)

    return refiner
