"""One way to declare a weighted loss network, used by training, refinement and evaluation alike.

A *term* is a mapping::

    lpips:
      weight: 0.8                 # 0: the term is left out and its weights file is never read
      inputs: images              # training only: images | ws_avg | ws_true (what the module compares)
      module:                     # the network: a Hydra ``_target_`` spec; its weights file is always `path`
        _target_: inversion.losses.LPIPSLoss.from_pretrained
        path: ${paths.lpips_alex}
        net: alex
      fallback: null              # optional module spec used (with a warning) when `path` is null
      crop: null                  # training only: [top, bottom, left, right] of both images at the loss size
                                  # (pSp's lpips_crop / l2_crop: [35, 223, 32, 220] at 256 px)

Every pretrained file has one config name under ``paths.*`` and every consumer reads the same spec:
:func:`build_terms` gives the training and refinement terms, :func:`build_network` the metric networks
(evaluation reads ``metrics.<name>.module``). Nothing is downloaded: a ``path`` that is null is an error naming the
config key it came from (training), or the term is skipped / replaced by its ``fallback`` with a warning
(``missing="skip"``: refinement and metrics, which report what was skipped).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..config import instantiate, to_plain

__all__ = ["INPUT_KINDS", "LossTerm", "MissingWeightsError", "build_network", "build_terms", "weights_key"]

#: What a training term compares: (reconstruction, target) images, (ws, w_avg) or (ws, the true ws).
INPUT_KINDS = ("images", "ws_avg", "ws_true")


class MissingWeightsError(FileNotFoundError):
    """A loss network's weights file is not configured (its ``path`` is null)."""


@dataclass
class LossTerm:
    """A weighted loss: ``module`` is called on (reconstruction, target) images, (ws, w_avg) or (ws, true ws)."""

    weight: float
    module: nn.Module
    inputs: str = "images"
    crop: tuple[int, int, int, int] | None = None  # [top, bottom, left, right] of both images (inputs: images)

    def __post_init__(self):
        if self.inputs not in INPUT_KINDS:
            raise ValueError(f"loss inputs must be one of {INPUT_KINDS}, got {self.inputs!r}")
        if self.crop is not None:
            box = tuple(int(v) for v in self.crop)
            if len(box) != 4 or not (0 <= box[0] < box[1] and 0 <= box[2] < box[3]) or self.inputs != "images":
                raise ValueError(f"loss crop must be [top, bottom, left, right] with top < bottom, left < right on "
                                 f"images, got {list(self.crop)} (inputs {self.inputs!r})")
            self.crop = box


def _plain(spec: Any, resolve: bool = True) -> dict:
    return dict(to_plain(spec, resolve=resolve))


def weights_key(spec: Any) -> str:
    """Where a module spec's ``path`` comes from: the ``paths.*`` key it interpolates (``paths.lpips_alex``), or
    ``path`` when it is written in place."""
    raw = _plain(spec, resolve=False).get("path")
    if isinstance(raw, str) and raw.startswith("${") and raw.endswith("}"):
        return raw[2:-1]
    return "path"


def build_network(spec: Any, **overrides: Any) -> nn.Module:
    """Instantiate a module spec (``{_target_: ..., path: ..., ...}``) with ``overrides`` as extra keyword
    arguments. A spec with ``path: null`` raises :class:`MissingWeightsError` naming the config key to set."""
    plain = _plain(spec)
    if "_target_" not in plain:
        raise ValueError(f"a loss network spec needs a `_target_`, got keys {sorted(plain)}")
    if "path" in plain and plain["path"] in (None, ""):
        raise MissingWeightsError(f"{plain['_target_']} needs its weights file, but `{weights_key(spec)}` is null; "
                                  f"set {weights_key(spec)}=/local/file (nothing is downloaded)")
    return instantiate({**plain, **overrides}, _convert_="all",  # the loader's own error names the file
                       surface=(FileNotFoundError, RuntimeError, ValueError, TypeError))


def build_terms(
    specs: Mapping[str, Any] | None,  # name -> {weight, module, inputs?, fallback?}
    *,
    missing: str = "error",  # null `path`: "error" (training) | "skip" (warn and leave the term out)
    what: str = "loss",  # Names the consumer in messages ("loss", "refine loss").
    allowed_inputs: tuple[str, ...] = INPUT_KINDS,  # Refinement compares images only.
    allow_crop: bool = True,  # Refinement compares whole images: a crop there is an error.
    warn: Callable[[str], None] = lambda msg: warnings.warn(msg, stacklevel=3),
) -> dict[str, LossTerm]:
    """The terms with a non-zero weight, their networks built by :func:`build_network`."""
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    out: dict[str, LossTerm] = {}
    for name, spec in (specs or {}).items():
        unknown = set(spec) - {"weight", "module", "inputs", "fallback", "crop"}
        if unknown or "module" not in spec:
            raise ValueError(f"{what} {name!r}: expected keys weight, module (inputs, fallback, crop), got "
                             f"{sorted(spec)}")
        crop = spec.get("crop")
        if crop is not None and not allow_crop:
            raise ValueError(f"{what} {name!r}: crop is a training option (pSp's crop losses), not supported here")
        weight = float(spec.get("weight", 1.0))
        if weight == 0:
            continue
        inputs = str(spec.get("inputs", "images"))
        if inputs not in allowed_inputs:
            raise ValueError(f"{what} {name!r}: inputs must be one of {allowed_inputs}, got {inputs!r}")
        try:
            module = build_network(spec["module"])
        except MissingWeightsError as err:
            if spec.get("fallback") is not None:
                warn(f"{what} {name!r}: {err}; using {_plain(spec['fallback'])['_target_']} with weight {weight}")
                module = build_network(spec["fallback"])
            elif missing == "skip":
                warn(f"{what} {name!r}: {err}; skipping this term")
                continue
            else:
                raise MissingWeightsError(f"{what} {name!r}: {err}") from None
        out[name] = LossTerm(weight=weight, module=module, inputs=inputs,
                             crop=None if crop is None else tuple(crop))
    if not out:
        raise ValueError(f"every {what} weight is 0 (or its weights are missing): nothing to optimise")
    return out
