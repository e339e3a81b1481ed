"""The evaluation loop: checkpoint + split + data root -> per-image metrics (cached, resumable) -> outputs.

Order of work: validate the config, resolve every image id (all missing ones reported at once), load the
checkpoint and check its generator against the data's expectations, load the metric networks, open the cache;
only then is anything computed or written. Per-image results are appended to ``cache/per_image.jsonl`` after
every batch, so a rerun with the same settings skips the batches already done (batches are a fixed grid over the
split, so a resumed run computes the same batches as a fresh one and gives the same bits).

Outputs (in ``out_dir``): ``metrics.json`` (deterministic: protocol, implementations, means per iteration),
``per_image.csv``, ``timing.json`` (latency and run facts; not deterministic), ``report.md``, ``grid.png``
and ``plots/metrics_vs_iteration.png``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import platform
import re
import shutil
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ..checkpoints import INVERTER_FORMAT, load_inverter
from ..data import ImageIdDataset, ids_sha256, read_split, render_seeds
from ..imageio import RESIZE_MODES, atomic_write_text, quantize, resize_images, save_strip
from ..inverter import Inverter
from ..models import CheckpointError, Generator
from ..models.loading import torch_load
from .metrics import HIGHER_IS_BETTER, MetricSuite, package_version, summarize_curves
from .refinement import SEEDS, default_snapshot_steps, refine_batch, summarize_refinement
from .report import markdown_refinement, markdown_table, write_report

__all__ = [
    "FORMAT",
    "ResultCache",
    "check_generator",
    "evaluate",
    "load_checkpoint",
    "measure_latency",
    "register_resolvers",
    "summarize",
]

log = logging.getLogger("inversion.evaluate")

FORMAT = "inversion.evaluation/v1"
DETERMINISM_NOTE = (
    "metrics.json and per_image.csv hold only quality metrics: two runs with the same settings on the same "
    "machine (CPU) give identical files. Latency and run facts (device, wall time, cached counts) are in "
    "timing.json, which is not deterministic."
)


def register_resolvers() -> None:
    """OmegaConf resolver ``${path_stem:PATH}`` (the checkpoint's file name without extension) for ``out_dir``."""
    if not OmegaConf.has_resolver("path_stem"):
        OmegaConf.register_new_resolver("path_stem", lambda p: Path(str(p)).stem if p else "no_checkpoint")


# ----------------------------------------------------------------------------- small helpers
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN / inf floats become None, tuples lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")


def _round(value: float, digits: int = 6) -> float:
    """Round to ``digits`` significant digits (robust to last-bit differences between batchings)."""
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def _safe_name(image_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", image_id)


def _container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


# ----------------------------------------------------------------------------- checks and loading
def _refine_cfg(cfg: DictConfig) -> Any:
    """The selected ``conf/refine`` entry, or None when refinement is off (``refine=none`` / null)."""
    refine = cfg.get("refine")
    if refine is None or (isinstance(refine, DictConfig) and not refine.get("enabled", True)):
        return None
    return refine


def _refine_num_steps(cfg: DictConfig) -> int:
    from ..refine import DEFAULT_NUM_STEPS

    return int(cfg.refine.get("num_steps", DEFAULT_NUM_STEPS))


def _check_config(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "checkpoint") or not cfg.checkpoint:
        raise ValueError("checkpoint=PATH is required: an official pSp / e4e / ReStyle .pt file or one of our exports")
    if _refine_cfg(cfg) is not None:
        seeds = list(cfg.refine_eval.seeds)
        if not seeds or len(set(seeds)) != len(seeds) or not set(seeds) <= set(SEEDS):
            raise ValueError(f"refine_eval.seeds={seeds}: a non-empty list of distinct values from {list(SEEDS)}")
        num_steps = _refine_num_steps(cfg)
        bad = [s for s in (cfg.refine_eval.steps or []) if not 0 <= int(s) <= num_steps]
        if bad:
            raise ValueError(f"refine_eval.steps {bad} outside [0, refine.num_steps={num_steps}]")
    protocol = cfg.protocol
    for key in ("resize_mode",):
        if protocol[key] not in RESIZE_MODES:
            raise ValueError(f"protocol.{key}={protocol[key]!r}; choose one of {list(RESIZE_MODES)}")
    if cfg.eval_data.input_resize_mode not in RESIZE_MODES:
        raise ValueError(f"eval_data.input_resize_mode={cfg.eval_data.input_resize_mode!r}; "
                         f"choose one of {list(RESIZE_MODES)}")
    if cfg.eval_data.kind not in ("seeds", "folder"):
        raise ValueError(f"eval_data.kind={cfg.eval_data.kind!r}; expected 'seeds' or 'folder'")
    if int(cfg.batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} requested but CUDA is not available; use device=cpu")
    return device


def load_checkpoint(path: str, generator_path: str | None, device: torch.device) -> Inverter:
    """``load_inverter`` with evaluation's extra check: ``generator_path`` only applies to our exports."""
    if generator_path is not None and Path(path).is_file():
        head = torch_load(path)
        if not (isinstance(head, dict) and head.get("format") == INVERTER_FORMAT):
            raise CheckpointError(
                f"{path}: generator_path={generator_path} was given, but this is not an inversion export: official "
                "pSp/e4e/ReStyle files carry their generator (decoder.*) inside; drop generator_path"
            )
        del head
    return load_inverter(path, device=device, generator_path=generator_path)


def check_generator(inverter: Inverter, expect: Mapping[str, Any] | None, source: str, data_name: str) -> None:
    """Raise :class:`CheckpointError` when the checkpoint's generator does not match what the data expects."""
    G = inverter.generator
    have = {"img_resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim}
    bad = [f"{k}: checkpoint {have[k]}, eval_data={data_name} expects {v}"
           for k, v in (expect or {}).items() if v is not None and k in have and int(v) != have[k]]
    unknown = sorted(set(expect or {}) - set(have))
    if unknown:
        raise ValueError(f"eval_data.expect has unknown keys {unknown}; allowed: {sorted(have)}")
    if bad:
        raise CheckpointError(
            f"{source}: its generator does not match the evaluation data ({'; '.join(bad)}). Evaluate it on the data "
            "its generator was trained for, point generator_path= at the right generator (our exports), or "
            "override eval_data.expect.<key>=null if this is intended."
        )


@dataclass
class _Views:
    """How one dataset image becomes the encoder input and the protocol target."""

    encoder_size: int
    input_mode: str
    size: int
    mode: str
    quantize: bool

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = image[None].float()
        return {"input": resize_images(x, self.encoder_size, self.input_mode)[0],
                "target": quantize(resize_images(x, self.size, self.mode), self.quantize)[0]}


class PairDataset(Dataset):
    """Wrap a dataset of ``{"image", "id"}`` items into ``{"index", "id", "input", "target"}`` items."""

    def __init__(self, base: Dataset, views: _Views):
        self.base = base
        self.views = views

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[i]
        return {"index": i, "id": str(item["id"]), **self.views(item["image"])}


class SeedImages(Dataset):
    """Generator samples by seed, ``{"image", "id"}``, rendered one seed at a time when requested.

    Same images as :class:`inversion.data.SeedDataset` (both use :func:`inversion.data.render_seeds`), but an
    image's bits never depend on which other seeds share its rendering batch, so a seed evaluates identically
    whatever the split, ``limit`` or resume state.
    """

    def __init__(self, generator: Generator, seeds: Sequence[str | int], truncation_psi: float = 1.0):
        self.generator = generator
        self.seeds = [int(s) for s in seeds]
        self.truncation_psi = truncation_psi

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        images, _ = render_seeds(self.generator, [self.seeds[i]], self.truncation_psi)
        return {"image": images[0], "id": str(self.seeds[i])}


def _folder_dataset(cfg: DictConfig, ids: list[str]) -> ImageIdDataset:
    root = cfg.eval_data.get("root")
    if not root:
        raise ValueError(f"eval_data={cfg.eval_data.name} reads images from a folder: pass data_root=/path/to/images "
                         "(e.g. CelebAMask-HQ/CelebA-HQ-img)")
    return ImageIdDataset(root, ids)  # reports every missing id at once (FileNotFoundError)


def _split_ids(cfg: DictConfig) -> list[str]:
    ids = read_split(str(cfg.eval_data.split))
    limit = cfg.get("limit")
    return ids[: int(limit)] if limit is not None else ids


# ----------------------------------------------------------------------------- cache
class ResultCache:
    """Per-image results in ``<dir>/per_image.jsonl`` (one JSON object per line), tied to a fingerprint."""

    def __init__(self, directory: Path, fingerprint: dict[str, Any], overwrite: bool = False):
        self.dir = directory
        self.file = directory / "per_image.jsonl"
        self.thumbs = directory / "thumbs"
        fp_file = directory / "fingerprint.json"
        fingerprint = _clean(fingerprint)
        if overwrite and directory.exists():
            shutil.rmtree(directory)
        if fp_file.exists():
            old = json.loads(fp_file.read_text(encoding="utf-8"))
            if old != fingerprint:
                keys = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
                raise ValueError(
                    f"{directory} holds cached results of a different evaluation (differs in: {', '.join(keys)}). "
                    "Use another out_dir, or overwrite=true to discard the cache."
                )
        self.thumbs.mkdir(parents=True, exist_ok=True)
        if not fp_file.exists():
            _write_json(fp_file, fingerprint)
        self.records: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        if not self.file.exists():
            return records
        with open(self.file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill: that image is simply redone
                    log.warning("ignoring unreadable cache line %s:%d", self.file, lineno)
                    continue
                records[str(rec["id"])] = rec
        return records

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.records

    def thumb_path(self, image_id: str) -> Path:
        return self.thumbs / f"{_safe_name(image_id)}.png"

    def add(self, records: Sequence[dict[str, Any]]) -> None:
        """Append records and flush them to disk (fsync), so a kill loses at most the batch in flight."""
        with open(self.file, "a", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, allow_nan=True) + "\n")
                self.records[str(rec["id"])] = rec
            f.flush()
            os.fsync(f.fileno())


# ----------------------------------------------------------------------------- the loop
@dataclass
class Refinement:
    """Per-image refinement after the encoder: the built refiner, the seeds and the scored steps."""

    refiner: Callable[..., Any]
    num_steps: int
    seeds: list[str]
    steps: list[int]
    seconds: dict[str, float]  # wall time per seed over the images computed in this run

    @classmethod
    def from_config(cls, cfg: DictConfig, device: torch.device) -> Refinement | None:
        refine_cfg = _refine_cfg(cfg)
        if refine_cfg is None:
            return None
        from ..refine import build_refiner

        num_steps = _refine_num_steps(cfg)
        steps = cfg.refine_eval.steps
        steps = default_snapshot_steps(num_steps) if not steps else sorted({int(s) for s in steps} | {num_steps})
        seeds = [str(s) for s in cfg.refine_eval.seeds]
        return cls(refiner=build_refiner(refine_cfg, device=device), num_steps=num_steps, seeds=seeds, steps=steps,
                   seconds=dict.fromkeys(seeds, 0.0))


def _to_protocol(cfg: DictConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    size, mode, q = int(cfg.protocol.size), str(cfg.protocol.resize_mode), bool(cfg.protocol.quantize)
    return lambda images: quantize(resize_images(images.float(), size, mode), q)


def _evaluate_batch(
    batch: Mapping[str, Any], inverter: Inverter, suite: MetricSuite, cfg: DictConfig, device: torch.device,
    refinement: Refinement | None = None,
) -> tuple[list[dict[str, Any]], list[torch.Tensor]]:
    """Invert (and refine) one batch; per-image records (metrics per step, and per refinement step and seed)
    and the protocol-size reconstructions per step (then the final refined ones per seed)."""
    x = batch["input"].to(device)
    target = batch["target"].to(device)
    to_protocol = _to_protocol(cfg)
    with torch.no_grad():
        result = inverter.invert(x, num_iters=cfg.get("num_iters"), noise_mode=str(cfg.noise_mode))
        recons, per_step = [], []
        for step in result.steps:
            recon = to_protocol(step.images)
            recons.append(recon)
            per_step.append(suite.compute(recon, target))
    records = []
    for j, image_id in enumerate(batch["id"]):
        steps = [{name: float(values[name][j]) for name in suite.names} for values in per_step]
        records.append({"id": str(image_id), "steps": steps})
    if refinement is not None:
        per_image, finals, seconds = refine_batch(
            refinement.refiner, inverter.generator, target, result.ws, seeds=refinement.seeds,
            snapshot_steps=refinement.steps, to_protocol=to_protocol, suite=suite, noise_mode=str(cfg.noise_mode),
            sync=_sync(device), progress=bool(cfg.progress))
        for rec, refined in zip(records, per_image):
            rec["refine"] = refined
        for seed in refinement.seeds:
            refinement.seconds[seed] += seconds[seed]
            recons.append(finals[seed])
    return records, recons


def _save_thumbs(batch: Mapping[str, Any], recons: list[torch.Tensor], cache: ResultCache, wanted: set[str],
                 size: int) -> None:
    for j, image_id in enumerate(batch["id"]):
        if str(image_id) in wanted:
            save_strip([batch["target"][j].cpu()] + [r[j].cpu() for r in recons], cache.thumb_path(str(image_id)),
                       size)


def _todo(ids: Sequence[str], cache: ResultCache, grid_ids: set[str], batch_size: int) -> list[int]:
    """Indices to compute: every batch of the fixed grid ``ids[k*B:(k+1)*B]`` that is not complete in the cache.

    Whole batches are redone so that a resumed run computes exactly the batches of a fresh run: per-image values
    (and so metrics.json) are then bit-identical for the same ``batch_size``.
    """
    def done(image_id: str) -> bool:
        return image_id in cache and (image_id not in grid_ids or cache.thumb_path(image_id).exists())

    todo: list[int] = []
    for start in range(0, len(ids), batch_size):
        batch = range(start, min(start + batch_size, len(ids)))
        if not all(done(ids[i]) for i in batch):
            todo.extend(batch)
    return todo


def _run_loop(
    data: PairDataset, todo: list[int], inverter: Inverter, suite: MetricSuite, cache: ResultCache, cfg: DictConfig,
    device: torch.device, grid_ids: set[str], refinement: Refinement | None = None,
) -> int:
    """Evaluate the dataset items ``todo``; returns how many images were computed."""
    if not todo:
        return 0
    loader = DataLoader(Subset(data, todo), batch_size=int(cfg.batch_size), shuffle=False,
                        num_workers=int(cfg.eval_data.get("num_workers", 0)))
    done = 0
    with tqdm(total=len(todo), unit="img", desc="evaluate", disable=not cfg.progress, dynamic_ncols=True) as bar:
        for batch in loader:
            records, recons = _evaluate_batch(batch, inverter, suite, cfg, device, refinement)
            _save_thumbs(batch, recons, cache, grid_ids, int(cfg.report.thumb_size))
            cache.add(records)
            done += len(records)
            bar.update(len(records))
            last = records[-1]["steps"][-1]
            bar.set_postfix({k: f"{v:.4g}" for k, v in last.items()}, refresh=False)
    return done


# ----------------------------------------------------------------------------- summaries and outputs
def summarize(records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """Mean and standard deviation of every metric at every step over the images (order independent: fsum)."""
    rows = summarize_curves([r["steps"] for r in records], names, _round)
    return [{"iteration": t, **row} for t, row in enumerate(rows, start=1)]


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _write_per_image_csv(path: Path, records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> None:
    _write_csv(path, ["id", "iteration", *names],
               ([rec["id"], t, *(repr(float(step[n])) for n in names)]
                for rec in records for t, step in enumerate(rec["steps"], start=1)))


def _write_refine_csv(path: Path, records: Sequence[Mapping[str, Any]], seeds: Sequence[str],
                      names: Sequence[str]) -> None:
    _write_csv(path, ["id", "seed", "step", *names],
               ([rec["id"], seed, point["step"], *(repr(float(point[n])) for n in names)]
                for rec in records for seed in seeds for point in rec["refine"][seed]))


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def measure_latency(
    inverter: Inverter,
    x: torch.Tensor,  # One batch of encoder inputs on the device.
    *,
    num_iters: int | None = None,
    noise_mode: str = "const",
    warmup: int = 2,
    repeats: int = 5,
) -> dict[str, Any]:
    """Time ``inverter.invert`` (encoder + generator, every ReStyle step) per batch after warm-up, synchronised."""
    device = x.device
    sync = _sync(device)
    times = []
    with torch.no_grad():
        for _ in range(max(0, warmup)):
            inverter.invert(x, num_iters=num_iters, noise_mode=noise_mode)
            sync()
        for _ in range(max(1, repeats)):
            sync()
            t0 = time.perf_counter()
            inverter.invert(x, num_iters=num_iters, noise_mode=noise_mode)
            sync()
            times.append(time.perf_counter() - t0)
    n = x.shape[0]
    return {
        "ms_per_image_median": 1000 * statistics.median(times) / n,
        "ms_per_image_mean": 1000 * sum(times) / len(times) / n,
        "ms_per_batch": [1000 * t for t in times],
        "batch_size": n,
        "warmup_batches": max(0, warmup),
        "timed_batches": len(times),
        "synchronized": device.type in ("cuda", "mps"),
        "what": "inverter.invert: encoder + generator at its resolution for every step; no data loading, "
                "resizing or metrics",
    }


def _device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} torch threads)"


def _checkpoint_info(cfg: DictConfig, inverter: Inverter) -> dict[str, Any]:
    G = inverter.generator
    info = {
        "path": str(cfg.checkpoint),
        "sha256": sha256_file(cfg.checkpoint),
        "generator_path": None if cfg.get("generator_path") is None else str(cfg.generator_path),
        "encoder": type(inverter.encoder).__name__,
        "residual": bool(inverter.residual),
        "num_iters": int(cfg.num_iters) if cfg.get("num_iters") is not None else int(inverter.num_iters),
        "encoder_size": int(inverter.encoder_size),
        "encoder_resize_mode": inverter.resize_mode,
        "generator": {"img_resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim},
    }
    if info["generator_path"] is not None:
        info["generator_sha256"] = sha256_file(cfg.generator_path)
    return info


def _protocol(cfg: DictConfig, inverter: Inverter, refinement: Refinement | None = None) -> dict[str, Any]:
    p = cfg.protocol
    return {
        "size": int(p.size),
        "resize_mode": str(p.resize_mode),
        "resize": f"targets and reconstructions resized to {int(p.size)}x{int(p.size)} with '{p.resize_mode}' "
                  "(inversion.inverter.resize_images)",
        "quantize_uint8": bool(p.quantize),
        "clamp": [-1.0, 1.0],
        "input_size": int(inverter.encoder_size),
        "input_resize_mode": str(cfg.eval_data.input_resize_mode),
        "id_note": "the ID network's own crop (metrics implementations), on the 256 px image; no face detection / "
                   "alignment (HyperStyle aligns with MTCNN before CurricularFace)",
        "psnr_cap_db": float(p.psnr_cap),
        "value_ranges": "L2 and LPIPS on [-1, 1]; PSNR and MS-SSIM on [0, 1] with data_range=1",
        "averaging": "arithmetic mean over images of the per-image values (std: population std)",
        "noise_mode": str(cfg.noise_mode),
        "fast_path": _container(cfg.get("fast")) or {},
        "refine": None if refinement is None else {
            "config": OmegaConf.to_container(cfg.refine, resolve=True),
            "seeds": list(refinement.seeds),
            "scored_steps": list(refinement.steps),
            "target": f"the protocol target ({int(p.size)} px, as scored); reconstructions of every scored step "
                      "go through the same protocol",
        },
    }


def _fingerprint(cfg: DictConfig, ckpt: Mapping[str, Any], protocol: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a per-image value depends on (not the id list, batch size or limit)."""
    metrics = _container(cfg.metrics)
    paths = {k: ((v or {}).get("module") or {}).get("path") for k, v in metrics.items()}
    files = {k: (sha256_file(p) if p else None) for k, p in paths.items()}
    data = {k: v for k, v in _container(cfg.eval_data).items() if k not in ("num_workers", "split")}
    return {
        "format": FORMAT,
        "checkpoint_sha256": ckpt["sha256"],
        "generator_sha256": ckpt.get("generator_sha256"),
        "num_iters": ckpt["num_iters"],
        "protocol": dict(protocol),
        "metrics": {**metrics, "files_sha256": files},
        "data": data,
        "device": torch.device(cfg.device).type,
    }


def _versions() -> dict[str, str]:
    from .. import __version__

    return {"inversion": __version__, "torch": torch.__version__, "torchmetrics": package_version("torchmetrics"),
            "lpips": package_version("lpips")}


# ----------------------------------------------------------------------------- entry point
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run an evaluation from the composed ``conf/evaluate.yaml`` config; returns ``metrics.json``'s content
    plus ``"run"`` (computed / cached counts, output paths; not written to metrics.json)."""
    register_resolvers()
    _check_config(cfg)
    device = _device(str(cfg.device))
    torch.manual_seed(int(cfg.seed))
    ids = _split_ids(cfg)
    if not ids:
        raise ValueError(f"split {cfg.eval_data.split!r} has no ids")
    folder = _folder_dataset(cfg, ids) if cfg.eval_data.kind == "folder" else None  # missing ids: before any work

    inverter = load_checkpoint(str(cfg.checkpoint), cfg.get("generator_path"), device)
    fast = _container(cfg.get("fast")) or {}
    inverter.set_fast_path(**fast)
    check_generator(inverter, _container(cfg.eval_data.get("expect")), str(cfg.checkpoint), str(cfg.eval_data.name))
    if cfg.eval_data.kind == "seeds":
        base: Dataset = SeedImages(inverter.generator, ids, float(cfg.eval_data.get("truncation_psi", 1.0)))
    else:
        base = folder  # type: ignore[assignment]
    views = _Views(inverter.encoder_size, str(cfg.eval_data.input_resize_mode), int(cfg.protocol.size),
                   str(cfg.protocol.resize_mode), bool(cfg.protocol.quantize))
    data = PairDataset(base, views)
    suite = MetricSuite.from_config(cfg.metrics, psnr_cap=float(cfg.protocol.psnr_cap), device=device)

    ckpt = _checkpoint_info(cfg, inverter)
    refinement = Refinement.from_config(cfg, device)
    protocol = _protocol(cfg, inverter, refinement)
    out_dir = Path(str(cfg.out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = ResultCache(out_dir / "cache", _fingerprint(cfg, ckpt, protocol), overwrite=bool(cfg.overwrite))

    grid_ids = set(ids[: int(cfg.report.grid_images)])
    todo = _todo(ids, cache, grid_ids, int(cfg.batch_size))
    cached = len(ids) - len(todo)
    log.info("evaluate: %d images in %s; %d cached (skipped), %d to compute", len(ids), cfg.eval_data.split,
             cached, len(todo))
    t0 = time.perf_counter()
    computed = _run_loop(data, todo, inverter, suite, cache, cfg, device, grid_ids, refinement)
    wall = time.perf_counter() - t0

    records = [cache.records[i] for i in ids]
    names = suite.names
    rows = summarize(records, names)
    metrics = {
        "format": FORMAT,
        "determinism": DETERMINISM_NOTE,
        "checkpoint": ckpt,
        "data": {"name": str(cfg.eval_data.name), "kind": str(cfg.eval_data.kind), "split": str(cfg.eval_data.split),
                 "root": cfg.eval_data.get("root"), "num_images": len(ids), "ids_sha256": ids_sha256(ids)},
        "protocol": protocol,
        "implementations": suite.descriptions,
        "versions": _versions(),
        "skipped": suite.skipped,
        "higher_is_better": {n: HIGHER_IS_BETTER[n] for n in names},
        "metrics": {"per_iteration": rows, "final": rows[-1]["mean"]},
    }
    if refinement is not None:
        reach = {str(k): [float(v) for v in vs] for k, vs in _container(cfg.refine_eval.reach).items()}
        metrics["metrics"]["refine"] = summarize_refinement(records, refinement.seeds, names, reach, _round)
    _write_json(out_dir / "metrics.json", metrics)
    _write_per_image_csv(out_dir / "per_image.csv", records, names)
    if refinement is not None:
        _write_refine_csv(out_dir / "per_image_refine.csv", records, refinement.seeds, names)

    timing: dict[str, Any] = {"device": str(device), "device_name": _device_description(device),
                              "torch_threads": torch.get_num_threads(),
                              "dtype": "float32" if inverter.autocast is None else
                              f"float32 weights, autocast {str(inverter.autocast).replace('torch.', '')}",
                              "images_computed": computed, "images_cached": cached,
                              "evaluation_wall_seconds": wall}
    if cfg.latency.enabled:
        n = min(int(cfg.latency.batch_size), len(data))
        x = torch.stack([data[i]["input"] for i in range(n)]).to(device)
        timing["latency"] = measure_latency(inverter, x, num_iters=cfg.get("num_iters"), noise_mode=str(cfg.noise_mode),
                                            warmup=int(cfg.latency.warmup), repeats=int(cfg.latency.repeats))
    else:
        timing["latency"] = None
    if refinement is not None:
        steps = refinement.num_steps
        timing["refine"] = {
            seed: {"wall_seconds": sec, "images": computed, "num_steps": steps,
                   "ms_per_image_step": 1000 * sec / (computed * steps) if computed and steps else None,
                   "what": "the refiner over the computed images in batches of batch_size (optimization steps, "
                           "snapshot copies; not the scoring of the snapshots)"}
            for seed, sec in refinement.seconds.items()}
    _write_json(out_dir / "timing.json", timing)

    thumbs = [cache.thumb_path(i) for i in ids[: int(cfg.report.grid_images)]]
    report = write_report(out_dir, metrics, timing, [p for p in thumbs if p.exists()])
    table = markdown_table(rows, names, with_std=False)
    print(f"\n{cfg.eval_data.name} ({len(ids)} images, {cfg.checkpoint}):\n{table}")
    if refinement is not None:
        print(f"\nrefinement ({cfg.refine.get('name', 'refine')}, {refinement.num_steps} steps):\n"
              + markdown_refinement(metrics["metrics"]["refine"], names))
    for name, reason in suite.skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"outputs: {out_dir}")
    return {**metrics, "run": {"computed": computed, "cached": cached, "out_dir": str(out_dir),
                               "report": str(report)}}
