"""Refinement inside the evaluation: quality vs optimization steps, mean-seeded against encoder-seeded.

For every batch, :func:`inversion.reconstruct.reconstruct` runs the configured refiner (``conf/refine``) once per
seed:

* ``encoder`` -- from the inverter's final ``ws`` (the StyleGAN-Encoder approach: the encoder's first guess,
  made exact per image);
* ``mean`` -- from ``w_avg`` (Image2StyleGAN: optimization from scratch).

The refiner keeps the latents after every step of a checkpoint grid (``snapshot_steps``); :func:`score_refinement`
renders each snapshot and scores it with the evaluation's metrics under the same protocol as the encoder's
reconstructions, so step 0 of the encoder-seeded run *is* the encoder's result. :func:`summarize_refinement` turns
the cached per-image values into mean / std per step and the table "steps needed to reach X"; ``report.py`` prints
and plots them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..reconstruct import SEEDS
from ..refine import RefineResult
from .metrics import HIGHER_IS_BETTER, MetricSuite, summarize_curves

__all__ = ["SEEDS", "SEED_LABELS", "default_snapshot_steps", "reach_table", "score_refinement", "summarize_refinement"]

SEED_LABELS = {"encoder": "encoder-seeded", "mean": "mean-seeded (w_avg)"}


def default_snapshot_steps(num_steps: int) -> list[int]:
    """0, 1, 2, 5, 10, 20, 50, ... below ``num_steps``, then ``num_steps``: a grid even on a log axis."""
    steps, base = [0], 1
    while base < num_steps:
        steps += [s for s in (base, 2 * base, 5 * base) if s < num_steps]
        base *= 10
    return steps + [num_steps] if num_steps > 0 else steps


def score_refinement(
    refined: Mapping[str, RefineResult],  # per seed, in order: Reconstruction.refined (snapshots kept)
    generator: torch.nn.Module,  # the inverter's frozen generator
    target: torch.Tensor,  # [N, 3, S, S] protocol targets in [-1, 1]: what the refiner fitted
    *,
    to_protocol: Callable[[torch.Tensor], torch.Tensor],  # generator images -> protocol-size, quantized images
    suite: MetricSuite,
    noise_mode: str = "const",
) -> tuple[list[dict[str, list[dict[str, float]]]], dict[str, torch.Tensor]]:
    """Render and score every snapshot of every seed. Returns per-image ``{seed: [{"step", metric...} per
    snapshot]}`` and the final protocol-size reconstructions per seed (for the grid)."""
    n = target.shape[0]
    per_image: list[dict[str, list[dict[str, float]]]] = [{} for _ in range(n)]
    finals: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for seed, result in refined.items():
            for i in range(n):
                per_image[i][seed] = []
            for snap in result.snapshots:
                recon = to_protocol(snap.render(generator, noise_mode=noise_mode))
                values = suite.compute(recon, target)
                for i in range(n):
                    per_image[i][seed].append({"step": snap.step, **{k: float(values[k][i]) for k in suite.names}})
            finals[seed] = recon
    return per_image, finals


def _reached(value: float, threshold: float, metric: str) -> bool:
    return value >= threshold if HIGHER_IS_BETTER[metric] else value <= threshold


def reach_table(
    records: Sequence[Mapping[str, Any]],  # cached records with a "refine" entry
    seeds: Sequence[str],
    names: Sequence[str],
    reach: Mapping[str, Sequence[float]],  # metric -> thresholds
) -> list[dict[str, Any]]:
    """Rows "steps needed to reach X": per metric, threshold and seed, the first snapshot step at which the
    mean over images reaches X (``mean_curve_steps``; None: not within the budget), the median over images of
    each image's first step reaching X (``median_image_steps``; None when fewer than half reach it) and the
    fraction of images that reach it by the last step."""
    metrics = [m for m in reach if m in names]
    curves = {seed: [rec["refine"][seed] for rec in records] for seed in seeds}
    means = {seed: [row["mean"] for row in summarize_curves(curves[seed], metrics)] for seed in seeds}  # unrounded
    rows = []
    for metric in metrics:
        for threshold in reach[metric]:
            row: dict[str, Any] = {"metric": metric, "threshold": float(threshold)}
            for seed in seeds:
                steps = [p["step"] for p in curves[seed][0]]
                mean_step = next((s for s, m in zip(steps, means[seed]) if _reached(m[metric], threshold, metric)),
                                 None)
                firsts = [next((p["step"] for p in c if _reached(p[metric], threshold, metric)), math.inf)
                          for c in curves[seed]]
                median = statistics.median_low(firsts)
                row[seed] = {"mean_curve_steps": mean_step,
                             "median_image_steps": None if math.isinf(median) else int(median),
                             "fraction_reached": sum(math.isfinite(f) for f in firsts) / len(firsts)}
            rows.append(row)
    return rows


def summarize_refinement(
    records: Sequence[Mapping[str, Any]],
    seeds: Sequence[str],
    names: Sequence[str],
    reach: Mapping[str, Sequence[float]],
    round_fn: Callable[[float], float] = lambda v: v,
) -> dict[str, Any]:
    """Mean / std of every metric at every snapshot step per seed, the final means, and :func:`reach_table`."""
    per_step: dict[str, list[dict[str, Any]]] = {}
    for seed in seeds:
        curves = [rec["refine"][seed] for rec in records]
        rows = summarize_curves(curves, names, round_fn)
        per_step[seed] = [{"step": int(point["step"]), **row} for point, row in zip(curves[0], rows)]
    return {
        "seeds": list(seeds),
        "steps": [r["step"] for r in per_step[seeds[0]]],
        "per_step": per_step,
        "final": {seed: per_step[seed][-1]["mean"] for seed in seeds},
        "reach": reach_table(records, seeds, names, reach),
    }
