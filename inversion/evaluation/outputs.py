"""What an evaluation writes: ``metrics.json`` (deterministic), ``per_image.csv``, ``per_image_refine.csv`` and
``timing.json`` (not deterministic), assembled from the cached per-image records."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from ..data import ids_sha256
from ..imageio import as_hw, atomic_write_text
from ..inverter import Inverter
from .data import dataset_kind
from .metrics import HIGHER_IS_BETTER, MetricSuite, package_version, summarize_curves
from .refinement import summarize_refinement
from .settings import EvalSettings

__all__ = ["DETERMINISM_NOTE", "FORMAT", "clean", "metrics_document", "protocol_record", "summarize",
           "timing_document", "write_csv", "write_json", "write_per_image_csv", "write_refine_csv"]

FORMAT = "inversion.evaluation/v1"
DETERMINISM_NOTE = (
    "metrics.json and per_image.csv hold only quality metrics: two runs with the same settings on the same "
    "machine (CPU) give identical files. Latency and run facts (device, wall time, cached counts) are in "
    "timing.json, which is not deterministic."
)


# ----------------------------------------------------------------------------- files
def clean(obj: Any) -> Any:
    """JSON-safe copy: NaN / inf floats become None, tuples lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(clean(obj), indent=2, allow_nan=False) + "\n")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_per_image_csv(path: Path, records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> None:
    """One row per image and ReStyle iteration: ``id, iteration, <metric>...`` (full float precision)."""
    write_csv(path, ["id", "iteration", *names],
              ([rec["id"], t, *(repr(float(step[n])) for n in names)]
               for rec in records for t, step in enumerate(rec["steps"], start=1)))


def write_refine_csv(path: Path, records: Sequence[Mapping[str, Any]], seeds: Sequence[str],
                     names: Sequence[str]) -> None:
    """One row per image, refinement seed and scored step: ``id, seed, step, <metric>...``."""
    write_csv(path, ["id", "seed", "step", *names],
              ([rec["id"], seed, point["step"], *(repr(float(point[n])) for n in names)]
               for rec in records for seed in seeds for point in rec["refine"][seed]))


# ----------------------------------------------------------------------------- content
def round6(value: float, digits: int = 6) -> float:
    """Round to ``digits`` significant digits (robust to last-bit differences between batchings)."""
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def summarize(records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """Mean and standard deviation of every metric at every step over the images (order independent: fsum)."""
    rows = summarize_curves([r["steps"] for r in records], names, round6)
    return [{"iteration": t, **row} for t, row in enumerate(rows, start=1)]


def _hw_text(size: int | tuple[int, int]) -> str:
    """``256x256`` for one side, ``192x256`` (height x width) for a pair."""
    h, w = as_hw(size)
    return f"{h}x{w}"


def protocol_record(settings: EvalSettings, inverter: Inverter) -> dict[str, Any]:
    """metrics.json's ``protocol``: everything that makes two runs' numbers comparable."""
    p, refine = settings.protocol, settings.refine
    return {
        "size": list(p.size) if isinstance(p.size, tuple) else p.size,
        "resize_mode": p.resize_mode,
        "resize": f"targets and reconstructions resized to {_hw_text(p.size)} with '{p.resize_mode}' "
                  "(inversion.inverter.resize_images)",
        "quantize_uint8": p.quantize,
        "clamp": [-1.0, 1.0],
        "input_size": inverter.encoder_size,
        "input_resize_mode": settings.data.input_resize_mode,
        "id_note": "the ID network's own crop (metrics implementations), on the 256 px image; no face detection / "
                   "alignment (HyperStyle aligns with MTCNN before CurricularFace)",
        "psnr_cap_db": p.psnr_cap,
        "value_ranges": "L2 and LPIPS on [-1, 1]; PSNR and MS-SSIM on [0, 1] with data_range=1",
        "averaging": "arithmetic mean over images of the per-image values (std: population std)",
        "noise_mode": settings.noise_mode,
        "fast_path": settings.fast.as_dict(),
        "refine": None if refine is None else {
            "config": OmegaConf.to_container(refine.config, resolve=True) if OmegaConf.is_config(refine.config)
            else dict(refine.config),
            "seeds": list(refine.seeds),
            "scored_steps": list(refine.steps),
            "target": f"the protocol target ({_hw_text(p.size)} px, as scored); reconstructions of every scored step "
                      "go through the same protocol",
        },
    }


def _versions() -> dict[str, str]:
    from .. import __version__

    return {"inversion": __version__, "torch": torch.__version__, "torchmetrics": package_version("torchmetrics"),
            "lpips": package_version("lpips")}


def metrics_document(settings: EvalSettings, ids: Sequence[str], records: Sequence[Mapping[str, Any]],
                     suite: MetricSuite, checkpoint: Mapping[str, Any], protocol: Mapping[str, Any]
                     ) -> dict[str, Any]:
    """The content of ``metrics.json`` (deterministic: no times, devices or counts)."""
    names = suite.names
    rows = summarize(records, names)
    data = settings.data
    doc: dict[str, Any] = {
        "format": FORMAT,
        "determinism": DETERMINISM_NOTE,
        "checkpoint": dict(checkpoint),
        "data": {"name": data.name, "kind": dataset_kind(data.dataset), "split": data.split, "root": data.root,
                 "num_images": len(ids), "ids_sha256": ids_sha256(ids)},
        "protocol": dict(protocol),
        "implementations": suite.descriptions,
        "versions": _versions(),
        "skipped": suite.skipped,
        "higher_is_better": {n: HIGHER_IS_BETTER[n] for n in names},
        "metrics": {"per_iteration": rows, "final": rows[-1]["mean"]},
    }
    if settings.refine is not None:
        doc["metrics"]["refine"] = summarize_refinement(records, settings.refine.seeds, names,
                                                        settings.refine.reach, round6)
    return doc


def timing_document(settings: EvalSettings, inverter: Inverter, *, device_name: str, computed: int, cached: int,
                    wall: float, latency: Mapping[str, Any] | None, refine_seconds: Mapping[str, float]
                    ) -> dict[str, Any]:
    """The content of ``timing.json``: device, counts, wall time, latency and refinement time per seed."""
    timing: dict[str, Any] = {"device": str(torch.device(settings.device)), "device_name": device_name,
                              "torch_threads": torch.get_num_threads(),
                              "dtype": "float32" if inverter.autocast is None else
                              f"float32 weights, autocast {str(inverter.autocast).replace('torch.', '')}",
                              "images_computed": computed, "images_cached": cached,
                              "evaluation_wall_seconds": wall, "latency": None if latency is None else dict(latency)}
    if settings.refine is not None:
        steps = settings.refine.num_steps
        timing["refine"] = {
            seed: {"wall_seconds": sec, "images": computed, "num_steps": steps,
                   "ms_per_image_step": 1000 * sec / (computed * steps) if computed and steps else None,
                   "what": "the refiner over the computed images in batches of batch_size (optimization steps, "
                           "snapshot copies; not the scoring of the snapshots)"}
            for seed, sec in refine_seconds.items()}
    return timing
