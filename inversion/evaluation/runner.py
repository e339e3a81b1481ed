"""``evaluate(cfg)``: checkpoint + split + data root -> per-image metrics (cached, resumable) -> outputs.

Order of work: read and check the settings (:class:`EvalSettings`), resolve every image id (all missing ones
reported at once), load the checkpoint and check its generator against the data's expectations, load the metric
networks, open the cache; only then is anything computed or written. Per-image results are appended to
``cache/per_image.jsonl`` after every batch, so a rerun with the same settings skips the batches already done.

Outputs (in ``out_dir``): ``metrics.json`` (deterministic: protocol, implementations, means per iteration),
``per_image.csv``, ``timing.json`` (latency and run facts; not deterministic), ``report.md``, ``grid.png``
and ``plots/metrics_vs_iteration.png``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from ..config import register_resolvers
from .cache import ResultCache, fingerprint
from .checkpoint import check_generator, checkpoint_info, load_checkpoint
from .data import PairDataset, Views, build_dataset, needs_generator, split_ids
from .latency import device_description, measure_latency, resolve_device
from .loop import Evaluator, todo_indices
from .metrics import MetricSuite
from .outputs import (
    metrics_document,
    protocol_record,
    summarize,
    timing_document,
    write_json,
    write_per_image_csv,
    write_refine_csv,
)
from .report import markdown_refinement, markdown_table, write_report
from .settings import EvalSettings

__all__ = ["evaluate", "register_resolvers", "summarize"]  # register_resolvers: evaluate.py imports it from here

log = logging.getLogger("inversion.evaluate")


def evaluate(cfg: Any) -> dict[str, Any]:
    """Run an evaluation from the composed ``conf/evaluate.yaml`` config (or ready :class:`EvalSettings`); returns
    ``metrics.json``'s content plus ``"run"`` (computed / cached counts, output paths; not in metrics.json)."""
    s = cfg if isinstance(cfg, EvalSettings) else EvalSettings.from_config(cfg)
    device = resolve_device(s.device)
    torch.manual_seed(s.seed)
    ids = split_ids(s.data, s.limit)
    with_generator = needs_generator(s.data.dataset)
    base = None if with_generator else build_dataset(s.data.dataset, ids)  # missing images: before any work

    inverter = load_checkpoint(s.checkpoint, s.generator_path, device)
    inverter.set_fast_path(**s.fast.as_dict())
    check_generator(inverter, s.data.expect, s.checkpoint, s.data.name)
    if with_generator:
        base = build_dataset(s.data.dataset, ids, generator=inverter.generator)
    views = Views.of(inverter.encoder_hw, s.data, s.protocol)
    data = PairDataset(base, views)
    suite = MetricSuite.from_config(s.metrics, psnr_cap=s.protocol.psnr_cap, device=device)

    ckpt = checkpoint_info(s, inverter)
    refiner = None
    if s.refine is not None:
        from ..refine import build_refiner

        refiner = build_refiner(s.refine.config, device=device)
    protocol = protocol_record(s, inverter)
    s.out_dir.mkdir(parents=True, exist_ok=True)
    cache = ResultCache(s.out_dir / "cache", fingerprint(s, ckpt, protocol), overwrite=s.overwrite)

    grid_ids = set(ids[: s.report.grid_images])
    todo = todo_indices(ids, cache, grid_ids, s.batch_size)
    cached = len(ids) - len(todo)
    log.info("evaluate: %d images in %s; %d cached (skipped), %d to compute", len(ids), s.data.split, cached,
             len(todo))
    evaluator = Evaluator(inverter=inverter, suite=suite, settings=s, to_protocol=views.to_protocol, refiner=refiner)
    t0 = time.perf_counter()
    computed = evaluator.run(data, todo, cache, grid_ids)
    wall = time.perf_counter() - t0

    records = [cache.records[i] for i in ids]
    names = suite.names
    metrics = metrics_document(s, ids, records, suite, ckpt, protocol)
    write_json(s.out_dir / "metrics.json", metrics)
    write_per_image_csv(s.out_dir / "per_image.csv", records, names)
    if s.refine is not None:
        write_refine_csv(s.out_dir / "per_image_refine.csv", records, s.refine.seeds, names)

    latency = None
    if s.latency.enabled:
        n = min(s.latency.batch_size, len(data))
        x = torch.stack([data[i]["input"] for i in range(n)]).to(device)
        latency = measure_latency(inverter, x, num_iters=s.num_iters, noise_mode=s.noise_mode,
                                  warmup=s.latency.warmup, repeats=s.latency.repeats)
    timing = timing_document(s, inverter, device_name=device_description(device), computed=computed, cached=cached,
                             wall=wall, latency=latency, refine_seconds=evaluator.refine_seconds)
    write_json(s.out_dir / "timing.json", timing)

    thumbs = [cache.thumb_path(i) for i in ids[: s.report.grid_images]]
    report = write_report(s.out_dir, metrics, timing, [p for p in thumbs if p.exists()])
    table = markdown_table(metrics["metrics"]["per_iteration"], names, with_std=False)
    print(f"\n{s.data.name} ({len(ids)} images, {s.checkpoint}):\n{table}")
    if s.refine is not None:
        print(f"\nrefinement ({s.refine.name}, {s.refine.num_steps} steps):\n"
              + markdown_refinement(metrics["metrics"]["refine"], names))
    for name, reason in suite.skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"outputs: {s.out_dir}")
    return {**metrics, "run": {"computed": computed, "cached": cached, "out_dir": str(s.out_dir),
                               "report": str(report)}}
