"""Pivotal tuning as a configured refinement (``conf/refine/pti.yaml``) and its compact result files.

:class:`Tuner` is what :func:`inversion.refine.build_refiner` returns for a config whose ``_target_`` is
``inversion.refine.Tuner``; it is called like a latent :class:`~inversion.refine.Refiner`
(``tuner(generator, target, ws_init=None, **overrides) -> TuneResult``), so evaluation, the invert CLI and
:func:`inversion.reconstruct.reconstruct` run it unchanged. Per image:

1. the pivot: the seed's ``ws`` (an inverter's, or ``w_avg`` when ``ws_init`` is None), optionally refined first by
   a latent refinement (``pivot``: a ``conf/refine`` entry such as the W projector of official PTI);
2. :func:`inversion.refine.tune_generator` around it.

``num_steps`` is the *total* budget per image: the pivot refinement's steps, then tuning for the rest, so two
configs with the same ``num_steps`` compare at equal total steps; snapshot step ``s`` is the pivot refinement's
latents for ``s`` < its steps and tuning step ``s - pivot steps`` after that.

Compact files (:func:`save_tuned` / :func:`load_tuned`): per image the pivot and the deltas (kilobytes to a few MB
with low rank), never a generator, with a fingerprint of the generator they were tuned against.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.stylegan2 import Generator
from .tuning import TuneResult, tune_generator, tuned_parameter_names

__all__ = ["FORMAT", "Tuner", "generator_fingerprint", "is_tuned_file", "load_tuned", "save_tuned"]

FORMAT = "inversion.tuned/1"


class Tuner(nn.Module):
    """A configured pivotal tuning (see the module docstring). Loss networks are submodules."""

    def __init__(
        self,
        *,
        losses: Mapping[str, tuple[float, nn.Module]],  # name -> (weight, module): the tuning losses (PTI: MSE + LPIPS)
        pivot: nn.Module | None = None,  # a latent Refiner run from the seed first (None: tune around the seed)
        num_steps: int = 350,  # total steps per image: pivot refinement + tuning
        lr: float = 3e-4,
        rank: int | None = None,  # None: full deltas (exact PTI); r: low-rank deltas
        threshold: float | None = 0.06,  # early stop on the stopping loss (PTI: LPIPS <= 0.06)
        threshold_loss: str | None = None,  # None: the LPIPS term; without one, no early stop (with a warning)
        loss_size: int | None = None,  # None: the target's size
        resize_mode: str = "adaptive_avg",
        noise_mode: str = "const",
        locality: Mapping[str, Any] | None = None,  # PTI's locality regulariser; None or enabled: false: off
        seed: int = 0,
        progress: bool | str = False,
    ):
        super().__init__()
        if not losses:
            raise ValueError("pti: no tuning loss left (every term was skipped or has weight 0)")
        self.loss_modules = nn.ModuleDict({k: m for k, (_, m) in losses.items()})
        self.loss_weights = {k: float(w) for k, (w, _) in losses.items()}
        self.pivot = pivot
        from ..losses import LPIPSLoss

        has_lpips = any(k == "lpips" or isinstance(m, LPIPSLoss) for k, m in self.loss_modules.items())
        if threshold is not None and threshold_loss is None and not has_lpips:
            warnings.warn("pti: no LPIPS term (paths.lpips_alex unset?), so the LPIPS early stop is off", stacklevel=2)
            threshold = None
        if locality is not None:
            locality = dict(locality)
            locality = locality if locality.pop("enabled", True) else None
        self.kwargs = {"num_steps": int(num_steps), "lr": lr, "rank": rank, "threshold": threshold,
                       "threshold_loss": threshold_loss, "loss_size": loss_size, "resize_mode": resize_mode,
                       "noise_mode": noise_mode, "locality": locality,
                       "seed": seed, "progress": progress}
        if self.pivot_steps > self.num_steps:
            raise ValueError(f"pti: num_steps={self.num_steps} is the total budget; the pivot refinement alone "
                             f"takes {self.pivot_steps}")

    @property
    def num_steps(self) -> int:
        return self.kwargs["num_steps"]

    @property
    def pivot_steps(self) -> int:
        return 0 if self.pivot is None else int(self.pivot.num_steps)

    def forward(self, generator: Generator, target: torch.Tensor, ws_init: torch.Tensor | None = None,
                *, snapshot_steps: Sequence[int] | None = None, **overrides: Any) -> TuneResult:
        kw = {**self.kwargs, **overrides}
        total, p = int(kw.pop("num_steps")), self.pivot_steps
        if p > total:
            raise ValueError(f"pti: num_steps={total} is less than the pivot refinement's {p} steps")
        snaps = sorted(set(snapshot_steps or ()))
        pivot_result = None
        if self.pivot is not None:
            pivot_result = self.pivot(generator, target, ws_init=ws_init, noise_mode=kw["noise_mode"],
                                      snapshot_steps=[s for s in snaps if s < p], progress=kw["progress"])
            pivots = pivot_result.ws
        elif ws_init is not None:
            pivots = ws_init
        else:
            pivots = generator.w_avg.expand(target.shape[0], generator.num_ws, -1)
        losses = {k: (w, self.loss_modules[k]) for k, w in self.loss_weights.items()}
        result = tune_generator(generator, target, pivots.detach(), num_steps=total - p, losses=losses,
                                snapshot_steps=[s - p for s in snaps if s >= p], **kw)
        for snap in result.snapshots:
            snap.step += p
        if pivot_result is not None:
            result.snapshots = list(pivot_result.snapshots) + result.snapshots
            result.pivot_steps = p
        return result

    def train(self, mode: bool = True) -> Tuner:  # loss networks stay in eval mode
        return super().train(False)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())


def generator_fingerprint(G: Generator) -> str:
    """SHA-256 (first 16 hex digits) of the tuned parameters' names, shapes and float32 values: a tuned file
    renders correctly only through the generator it was tuned against."""
    h = hashlib.sha256()
    params = dict(G.named_parameters())
    for name in tuned_parameter_names(G):
        t = params[name].detach().float().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def save_tuned(
    result: TuneResult,
    path: str | os.PathLike,
    generator: Generator,  # the generator that was tuned (its fingerprint is stored)
    *,
    index: int | None = None,  # one image's file; None: every image of the result
    meta: Mapping[str, Any] | None = None,  # e.g. {"source": ..., "checkpoint": ...} (str / int / float values)
) -> Path:
    """Write the compact tuning result (pivots, deltas, what was tuned; no generator) atomically."""
    from ..imageio import atomic_save

    sel = slice(None) if index is None else slice(index, index + 1)
    doc = {
        "format": FORMAT,
        "ws": result.ws[sel].detach().float().cpu().clone(),  # clone: a view would save the whole batch
        "deltas": {k: v[sel].detach().float().cpu().clone() for k, v in result.deltas.items()},
        "kinds": dict(result.kinds),
        "rank": result.rank,
        "num_steps": int(result.num_steps),
        "pivot_steps": int(result.pivot_steps),
        "steps_taken": None if result.steps_taken is None else result.steps_taken[sel].clone(),
        "generator": {"fingerprint": generator_fingerprint(generator), "img_resolution": generator.img_resolution,
                      "num_ws": generator.num_ws, "w_dim": generator.w_dim},
        "meta": dict(meta or {}),
    }
    return atomic_save(doc, path)


def load_tuned(
    path: str | os.PathLike,
    generator: Generator | None = None,  # checked against the stored fingerprint when given
) -> TuneResult:
    """A file of :func:`save_tuned` as a :class:`TuneResult` (``images`` None: render with
    ``result.render(generator)``). Errors name the file: not a tuned file, or a different generator."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tuned file not found: {path}")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch / pickle raise many types for non-torch or corrupt files
        raise ValueError(f"{path}: not a tuned-result file ({type(e).__name__}: {e})") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a tuned-result file (expected format {FORMAT!r}; these are written by "
                         "inversion.refine.save_tuned and `inversion invert --refine pti`)")
    info = doc["generator"]
    if generator is not None:
        got = generator_fingerprint(generator)
        if got != info["fingerprint"]:
            raise ValueError(f"{path}: tuned against a different generator (fingerprint {info['fingerprint']}, "
                             f"{info['img_resolution']} px; this generator's is {got}, {generator.img_resolution} px)")
    return TuneResult(ws=doc["ws"], deltas=doc["deltas"], images=None, steps_taken=doc["steps_taken"],
                      rank=doc["rank"], num_steps=doc["num_steps"], kinds=doc["kinds"],
                      pivot_steps=doc["pivot_steps"], meta=doc["meta"])


def is_tuned_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a :func:`save_tuned` file (read safely; False for anything else)."""
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT
