"""What every checkpoint reader shares: the error type, strict state-dict loading, the ``latent_avg`` rule and the
allow-listed import of the classes a checkpoint names.

* :class:`CheckpointError` -- a file that cannot be used; the message names the file and the problem.
* :func:`state_diff` / :func:`load_state_strict` -- keys and shapes of a state dict against a module, compared
  key by key; :func:`load_state_strict` raises one :class:`CheckpointError` listing missing keys, unexpected keys
  and shape mismatches before anything is loaded. Generators (rosinality / pSp ``decoder.*`` / converted NVIDIA
  pickles), encoders (official ``encoder.*``, our exports, Lightning checkpoints) and the pretrained networks
  (IR-SE / ResNet-34 encoder bodies, ArcFace / FaceNet / MoCo / CurricularFace loss networks; those keep raising
  ``RuntimeError``) all load through it.
* :func:`normalize_latent_avg` -- the one reading of ``latent_avg`` / ``w_avg`` (``[w_dim]``, ``[1, w_dim]`` or
  ``[num_ws, w_dim]``) as ``[num_ws, w_dim]``.
* :func:`import_target` -- a class or factory named in a checkpoint (``'inversion.encoders.X'``); nothing outside
  ``inversion.*`` is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "StateDiff",
    "import_target",
    "load_state_strict",
    "normalize_latent_avg",
    "state_diff",
]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: wrong format, inconsistent contents, or a config mismatch."""


class StateDiff(NamedTuple):
    """How a state dict differs from the one a module expects (see :func:`state_diff`)."""

    missing: list[str]  # expected keys the state dict lacks (sorted)
    unexpected: list[str]  # keys of the state dict the module does not have (sorted)
    mismatched: list[tuple[str, Any, tuple[int, ...]]]  # (key, its shape or type name, expected shape)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)


def _shape(value: Any) -> Any:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def state_diff(state: Mapping[str, Any], expected: Mapping[str, torch.Tensor]) -> StateDiff:
    """Keys and shapes of ``state`` against ``expected`` (e.g. ``module.state_dict()``, meta tensors are fine)."""
    mismatched = [(k, _shape(v), tuple(expected[k].shape)) for k, v in state.items()
                  if k in expected and _shape(v) != tuple(expected[k].shape)]
    return StateDiff(sorted(set(expected) - set(state)), sorted(set(state) - set(expected)), mismatched)


def _head(items: list[Any], n: int) -> str:
    return f"{items[:n]}{'...' if len(items) > n else ''}"


def load_state_strict(
    module: nn.Module,  # Where the weights go.
    state: Mapping[str, Any],  # The file's state dict, keys already in the module's naming.
    source: str,  # The file (and the part of it), named in the error.
    *,
    what: str = "weights",  # What the tensors are, for the error ("encoder weights", ...).
    required: Callable[[str], bool] | None = None,  # Module keys the file must hold; None: all of them.
    hint: str = "",  # Appended to the error, e.g. where to get the right file.
    error: type[Exception] = CheckpointError,  # Raised on a mismatch (pretrained-network loaders: RuntimeError).
    show: int = 8,  # At most this many keys of each kind in the error.
) -> None:
    """``module.load_state_dict(state)`` after a key-by-key check; nothing is loaded if anything differs.

    Every ``required`` module key must be in ``state`` (the others keep their values: a pretrained body under new
    heads), every key of ``state`` must be one of the module's, with the module's shape. BatchNorm's
    ``num_batches_tracked`` may be absent: files written before PyTorch 0.4.1 (torchvision's ResNet-34) lack it and
    ``load_state_dict`` fills it in itself, as it always has. Otherwise raises ``error``
    ``"<source>: <what> do not fit <Module>: missing [...]; unexpected [...]; shape mismatches [key: file (..) vs
    model (..), ...]. <hint>"`` (only the non-empty parts).
    """
    diff = state_diff(state, module.state_dict())
    missing = [k for k in diff.missing if (required is None or required(k)) and not k.endswith(".num_batches_tracked")]
    if missing or diff.unexpected or diff.mismatched:
        parts = [f"missing {_head(missing, show)}" if missing else "",
                 f"unexpected {_head(diff.unexpected, show)}" if diff.unexpected else "",
                 "shape mismatches " + _head([f"{k}: file {got} vs model {want}" for k, got, want in diff.mismatched],
                                             show) if diff.mismatched else ""]
        raise error(f"{source}: {what} do not fit {type(module).__name__}: " + "; ".join(p for p in parts if p)
                    + (f". {hint}" if hint else ""))
    module.load_state_dict(dict(state), strict=required is None)


def normalize_latent_avg(
    latent_avg: torch.Tensor,  # The stored average latent (or a generator's w_avg).
    *,
    num_ws: int,  # Layers of the generator it belongs to.
    w_dim: int,  # W dimensionality of that generator.
    source: str,  # The file (and key) or the caller, named in the error.
) -> torch.Tensor:
    """``latent_avg`` as a new float32 ``[num_ws, w_dim]`` tensor on its device.

    Accepted: ``[w_dim]`` (rosinality's ``latent_avg``, our ``w_avg``) and ``[1, w_dim]`` (pSp's learn_in_w,
    rosinality's ``mean_latent``), both repeated per layer, and ``[num_ws, w_dim]`` (pSp / e4e / ReStyle repeat it
    per layer; kept as is, rows may differ). Anything else raises :class:`CheckpointError` (a ``ValueError``).
    A generator's ``w_avg`` is row 0.
    """
    t = latent_avg.detach().float()
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[0] not in (1, num_ws) or t.shape[1] != w_dim:
        raise CheckpointError(f"{source}: latent_avg {tuple(latent_avg.shape)} does not fit the generator "
                              f"(num_ws={num_ws}, w_dim={w_dim}); expected [{w_dim}], [1, {w_dim}] or "
                              f"[{num_ws}, {w_dim}]")
    return t.expand(num_ws, w_dim).clone(memory_format=torch.contiguous_format)


def import_target(
    target: str,  # Dotted path of a class or factory, e.g. 'inversion.encoders.GradualStyleEncoder'.
    source: str = "a checkpoint",  # The file that names it, for the error.
) -> Any:
    """The object at ``target``; only ``inversion.*`` is importable (a checkpoint must not choose what runs)."""
    if not isinstance(target, str) or not target.startswith("inversion."):
        raise CheckpointError(f"refusing to build {target!r} from {source}: only inversion.* classes are allowed")
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"{source}: names {target!r}, which does not exist in this version: {e}") from e
