"""Typed evaluation settings: the composed ``conf/evaluate.yaml``, read and checked once by
:meth:`EvalSettings.from_config`.

Every other part of the evaluation takes these frozen dataclasses, never the DictConfig. Two entries stay specs for
their builders: ``metrics`` (:meth:`MetricSuite.from_config`) and ``refine`` (:func:`inversion.refine.build_refiner`),
kept as given so that their errors still name the ``paths.*`` key of a missing weights file; ``eval_data.dataset`` is
resolved to a plain dict (a Hydra ``_target_`` spec, built by :func:`inversion.evaluation.data.build_dataset`).
Every problem is a ``ValueError`` naming the config key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..config import to_plain
from ..imageio import RESIZE_MODES
from ..inverter import AUTOCAST_DTYPES
from .refinement import SEEDS, default_snapshot_steps

__all__ = ["EXPECT_KEYS", "NOISE_MODES", "EvalData", "EvalSettings", "FastPath", "Latency", "Protocol", "RefineEval",
           "ReportSettings"]

NOISE_MODES = ("const", "random", "none")
EXPECT_KEYS = ("img_resolution", "num_ws", "w_dim")
_NONE = object()
_KINDS = {"int": int, "float": float, "bool": bool, "str": str}


# ----------------------------------------------------------------------------- reading values
def _get(node: Any, key: str, where: str, kind: type, *, optional: bool = False, default: Any = _NONE) -> Any:
    """``node[key]`` checked against ``kind`` (int, float, bool or str); None only when ``optional``."""
    name = f"{where}.{key}" if where else key
    if node is None or key not in node:
        if default is not _NONE:
            return default
        raise ValueError(f"{name} is missing from the config")
    if isinstance(node, DictConfig) and OmegaConf.is_missing(node, key):
        raise ValueError(f"{name} is required (it is ??? in the config)")
    value = node[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) and kind is not bool or value is None:
        ok = False
    else:
        ok = isinstance(value, {int: int, float: int | float, bool: bool, str: str | int | float}[kind])
    if not ok:
        what = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]
        raise ValueError(f"{name}={value!r}: expected {what}{' or null' if optional else ''}")
    return kind(value)


def _read(cls: type, node: Any, where: str, *, strict: bool = True, **given: Any) -> Any:
    """``cls`` (a dataclass) from the mapping ``node``: every field not ``given`` read by its annotation (``int``,
    ``str | None``, ...); with ``strict``, a key that is no field is an error (a typo is not a silent default)."""
    if not isinstance(node, Mapping | DictConfig):
        raise ValueError(f"{where}={node!r}: expected a mapping")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(node) - set(names))
    if strict and unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; allowed: {sorted(names)}")
    for f in fields(cls):
        if f.name not in given:
            kind, _, none = str(f.type).partition(" | ")
            default = _NONE if f.default is MISSING else f.default
            given[f.name] = _get(node, f.name, where, _KINDS[kind], optional=bool(none), default=default)
    return cls(**given)


def _at_least(value: int | None, low: int, name: str) -> None:
    if value is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def _choice(value: str | None, choices: Any, name: str) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"{name}={value!r}; choose one of {list(choices)}")


# ----------------------------------------------------------------------------- the sections (checked on creation)
@dataclass(frozen=True)
class Protocol:
    """``protocol.*``: how targets and reconstructions are compared (recorded in metrics.json)."""

    size: int | tuple[int, int]  # one side (square) or [height, width] (cars: the official 192x256)
    resize_mode: str
    quantize: bool
    psnr_cap: float

    def __post_init__(self):
        size = self.size
        if isinstance(size, int) and not isinstance(size, bool):
            _at_least(size, 1, "protocol.size")
        elif (isinstance(size, tuple | list) and len(size) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)):
            object.__setattr__(self, "size", tuple(size))
        else:
            raise ValueError(f"protocol.size={size!r}: expected one side or [height, width] (positive integers)")
        _choice(self.resize_mode, RESIZE_MODES, "protocol.resize_mode")
        if not self.psnr_cap > 0:
            raise ValueError(f"protocol.psnr_cap must be > 0, got {self.psnr_cap}")


@dataclass(frozen=True)
class Latency:
    """``latency.*``: timing of ``inverter.invert`` on one batch (timing.json)."""

    enabled: bool
    batch_size: int
    warmup: int
    repeats: int

    def __post_init__(self):
        _at_least(self.batch_size, 1, "latency.batch_size")
        _at_least(self.warmup, 0, "latency.warmup")
        _at_least(self.repeats, 1, "latency.repeats")


@dataclass(frozen=True)
class ReportSettings:
    """``report.*``: grid.png shows the first ``grid_images`` ids, ``thumb_size`` px per tile."""

    grid_images: int
    thumb_size: int

    def __post_init__(self):
        _at_least(self.grid_images, 0, "report.grid_images")
        _at_least(self.thumb_size, 1, "report.thumb_size")


@dataclass(frozen=True)
class FastPath:
    """``fast.*``: :meth:`Inverter.set_fast_path` switches (recorded in the protocol: autocast changes values)."""

    autocast: str | None = None
    channels_last: bool = False
    compile: str | None = None

    def __post_init__(self):
        _choice(self.autocast, sorted(AUTOCAST_DTYPES), "fast.autocast")

    def as_dict(self) -> dict[str, Any]:
        return {"autocast": self.autocast, "channels_last": self.channels_last, "compile": self.compile}


@dataclass(frozen=True)
class RefineEval:
    """``refine`` (when on) and ``refine_eval.*``: the refiner's spec and what is scored."""

    config: Any  # the conf/refine entry, for inversion.refine.build_refiner (kept as given)
    name: str
    num_steps: int
    seeds: tuple[str, ...]  # from SEEDS, distinct, in order
    steps: tuple[int, ...]  # scored snapshot steps, sorted, ending with num_steps
    reach: dict[str, tuple[float, ...]] = field(default_factory=dict)  # metric -> thresholds

    def __post_init__(self):
        _at_least(self.num_steps, 0, "refine.num_steps")
        seeds = list(self.seeds)
        if not seeds or len(set(seeds)) != len(seeds) or not set(seeds) <= set(SEEDS):
            raise ValueError(f"refine_eval.seeds={seeds}: a non-empty list of distinct values from {list(SEEDS)}")
        bad = [s for s in self.steps if not 0 <= s <= self.num_steps]
        if bad:
            raise ValueError(f"refine_eval.steps {bad} outside [0, refine.num_steps={self.num_steps}]")

    @classmethod
    def from_config(cls, cfg: Any) -> RefineEval | None:
        """None when ``refine`` is off (``refine=none``, ``enabled: false`` or null)."""
        refine = cfg.get("refine")
        if refine is None or not refine.get("enabled", True):
            return None
        from ..refine import DEFAULT_NUM_STEPS

        num_steps = _get(refine, "num_steps", "refine", int, default=DEFAULT_NUM_STEPS)
        node = to_plain(cfg.get("refine_eval")) or {}
        unknown = sorted(set(node) - {"seeds", "steps", "reach"})
        if unknown:
            raise ValueError(f"refine_eval has unknown keys {unknown}; allowed: ['reach', 'seeds', 'steps']")
        raw = node.get("steps") or []
        if not isinstance(raw, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw):
            raise ValueError(f"refine_eval.steps={raw!r}: expected a list of integers or null")
        reach = node.get("reach") or {}
        for metric, values in reach.items():
            if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
                raise ValueError(f"refine_eval.reach.{metric}={values!r}: expected a list of numbers")
        steps = sorted(set(raw) | {num_steps}) if raw else default_snapshot_steps(num_steps)
        return cls(config=refine, name=str(refine.get("name", "refine")), num_steps=num_steps,
                   seeds=tuple(str(s) for s in node.get("seeds") or ()), steps=tuple(steps),
                   reach={str(k): tuple(float(v) for v in vs) for k, vs in reach.items()})


@dataclass(frozen=True)
class EvalData:
    """``eval_data``: which images (``dataset``, a Hydra ``_target_`` spec) and how they enter the encoder."""

    name: str
    split: str
    dataset: dict[str, Any]  # resolved spec; the evaluation adds the split's ids (and the generator, if taken)
    input_resize_mode: str
    expect: dict[str, int | None]  # the checkpoint's generator must match (None: not checked)
    num_workers: int = 0

    def __post_init__(self):
        spec = self.dataset
        if not isinstance(spec, dict) or not spec.get("_target_"):
            raise ValueError(f"eval_data.dataset={spec!r}: expected a Hydra spec with a _target_ (e.g. "
                             "inversion.data.ImageIdDataset with root=${data_root})")
        if "root" in spec and not spec["root"]:
            raise ValueError(f"eval_data={self.name} reads images from a folder (eval_data.dataset.root is not set): "
                             "pass data_root=/path/to/images (e.g. CelebAMask-HQ/CelebA-HQ-img)")
        unknown = sorted(set(self.expect) - set(EXPECT_KEYS))
        if unknown:
            raise ValueError(f"eval_data.expect has unknown keys {unknown}; allowed: {sorted(EXPECT_KEYS)}")
        for key in self.expect:
            _get(self.expect, key, "eval_data.expect", int, optional=True)
        _choice(self.input_resize_mode, RESIZE_MODES, "eval_data.input_resize_mode")
        _at_least(self.num_workers, 0, "eval_data.num_workers")

    @property
    def root(self) -> str | None:
        """The image folder of a folder dataset (its spec's ``root``), else None."""
        root = self.dataset.get("root")
        return None if root is None else str(root)

    @classmethod
    def from_config(cls, cfg: Any) -> EvalData:
        node = cfg.get("eval_data")
        if node is not None and "kind" in node:
            raise ValueError("eval_data.kind is no longer read: describe the images with eval_data.dataset, a Hydra "
                             "spec (_target_: inversion.data.SeedDataset or inversion.data.ImageIdDataset); see "
                             "conf/eval_data/demo.yaml and celebahq_test.yaml")
        return _read(cls, node, "eval_data", dataset=to_plain(node.get("dataset")) if node is not None else None,
                     expect=dict(to_plain(node.get("expect")) or {}) if node is not None else {})


# ----------------------------------------------------------------------------- everything
@dataclass(frozen=True)
class EvalSettings:
    """One evaluation run, as ``conf/evaluate.yaml`` describes it (see that file for every key)."""

    checkpoint: str
    device: str
    batch_size: int
    out_dir: Path
    data: EvalData
    protocol: Protocol
    metrics: Any  # the metrics spec, for MetricSuite.from_config (kept as given)
    refine: RefineEval | None
    fast: FastPath
    latency: Latency
    report: ReportSettings
    generator_path: str | None = None
    num_iters: int | None = None
    noise_mode: str = "const"
    limit: int | None = None
    seed: int = 0
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self):
        _at_least(self.batch_size, 1, "batch_size")
        _at_least(self.num_iters, 1, "num_iters")
        _at_least(self.limit, 1, "limit")
        _choice(self.noise_mode, NOISE_MODES, "noise_mode")
        try:
            torch.device(self.device)
        except RuntimeError as err:
            raise ValueError(f"device={self.device!r}: {err} (cpu, cuda, cuda:1, mps ...)") from err

    @classmethod
    def from_config(cls, cfg: Any) -> EvalSettings:
        """Read and check the composed ``conf/evaluate.yaml`` (DictConfig or dict); ValueError naming the key."""
        from ..config import register_resolvers

        register_resolvers()  # ${path_stem:...} in out_dir
        missing = isinstance(cfg, DictConfig) and "checkpoint" in cfg and OmegaConf.is_missing(cfg, "checkpoint")
        if missing or not cfg.get("checkpoint"):
            raise ValueError("checkpoint=PATH is required: an official pSp / e4e / ReStyle .pt file or one of our "
                             "exports")
        _at_least(_get(cfg, "batch_size", "", int), 1, "batch_size")  # before latency.batch_size=${batch_size}
        sections = {"latency": Latency, "report": ReportSettings}
        protocol = cfg.get("protocol")
        size = protocol.get("size") if isinstance(protocol, Mapping | DictConfig) else None
        size = list(size) if isinstance(size, Sequence | ListConfig) and not isinstance(size, str) else size
        return _read(
            cls, cfg, "", strict=False, out_dir=Path(_get(cfg, "out_dir", "", str)), metrics=cfg.get("metrics") or {},
            data=EvalData.from_config(cfg), refine=RefineEval.from_config(cfg),
            fast=_read(FastPath, cfg.get("fast") or {}, "fast"),
            protocol=_read(Protocol, protocol, "protocol", size=size),
            **{key: _read(kind, cfg.get(key), key) for key, kind in sections.items()})
