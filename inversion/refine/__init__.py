"""Per-image optimization refinement (issue 6): :func:`refine` and the config builder :func:`build_refiner`.

``conf/refine/<name>.yaml`` is turned into a callable ``(generator, target, ws_init=None) -> RefineResult``
by :func:`build_refiner` (``None`` for ``enabled: false``). Config keys:

* ``enabled``: false gives no refiner (``conf/refine/none.yaml``);
* ``losses``: ``{name: {weight, module: {_target_: ..., path: ...}, fallback: ...}}``, the loss spec of
  :func:`inversion.losses.build_terms` that training and evaluation read too. A term whose weights ``path`` is null
  (``paths.vgg16`` / ``paths.ir_se50`` unset) is skipped with a warning, or replaced by its ``fallback``;
* every other key (``space``, ``num_steps``, ``lr``, ``noise_regularize``, ``lr_rampup``, ...) is passed to
  :func:`refine` as a keyword argument.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..config import to_plain
from .optimize import SPACES, RefineResult, RefineSnapshot, karras_lr, noise_regularization, refine
from .pti import Tuner, generator_fingerprint, is_tuned_file, load_tuned, save_tuned
from .tuning import LOCALITY_DEFAULTS, TuneResult, TuneSnapshot, tune_generator, tuned_parameter_names

__all__ = ["DEFAULT_NUM_STEPS", "LOCALITY_DEFAULTS", "SPACES", "RefineResult", "RefineSnapshot", "Refiner",
           "TuneResult", "TuneSnapshot", "Tuner", "build_losses", "build_refiner", "generator_fingerprint",
           "is_tuned_file", "karras_lr", "load_tuned", "noise_regularization", "refine", "save_tuned",
           "tune_generator", "tuned_parameter_names"]

DEFAULT_NUM_STEPS = inspect.signature(refine).parameters["num_steps"].default


def build_losses(cfg: Mapping[str, Any]) -> dict[str, tuple[float, nn.Module]]:
    """The ``losses`` entry of a refine config as ``{name: (weight, module)}`` (see the module docstring)."""
    from ..losses import build_terms

    terms = build_terms(cfg.get("losses"), missing="skip", what="refine loss", allowed_inputs=("images",),
                        allow_crop=False)
    return {name: (term.weight, term.module) for name, term in terms.items()}


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


def build_refiner(cfg: Any, device: torch.device | str | None = None) -> Refiner | Tuner | None:
    """``conf/refine/*.yaml`` (dict or DictConfig) -> a :class:`Refiner` (its loss networks on ``device``), or
    ``None`` when ``enabled`` is false. A config with a ``_target_`` (``conf/refine/pti.yaml``:
    ``inversion.refine.Tuner``) builds that class from its keyword arguments, with ``losses`` built as above and
    ``pivot`` (a nested refine config) built by this function."""
    losses = cfg.get("losses")  # kept as given: a DictConfig still names the ``paths.*`` key of a missing file
    pivot = cfg.get("pivot")
    cfg = dict(to_plain(cfg))
    if not cfg.get("enabled", True):
        return None
    target = cfg.get("_target_")
    kwargs = {k: v for k, v in cfg.items() if k not in ("enabled", "losses", "name", "_target_", "pivot")}
    if target is None:
        cls, allowed = Refiner, set(inspect.signature(refine).parameters)
    else:
        from hydra.utils import get_class

        cls = get_class(target)
        allowed = set(inspect.signature(cls).parameters) - {"losses"}
        if "pivot" in allowed:
            kwargs["pivot"] = None if pivot is None else build_refiner(pivot)
    unknown = set(kwargs) - allowed
    if target is None and "pivot" in cfg:
        unknown.add("pivot")
    if unknown:
        raise ValueError(f"refine config: unknown keys {sorted(unknown)}")
    refiner = cls(losses=build_losses({"losses": losses}), **kwargs).eval()
    return refiner if device is None else refiner.to(device)
