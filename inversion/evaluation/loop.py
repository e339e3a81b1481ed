"""The evaluation loop: which batches to compute, and each batch reconstructed, scored, cached and thumbnailed.

Batches are a fixed grid over the split (``ids[k*B:(k+1)*B]``): a resumed run computes exactly the batches a fresh
run would, so per-image values (and metrics.json) are bit-identical for the same ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ..imageio import save_strip
from ..inverter import Inverter
from ..reconstruct import reconstruct
from .cache import ResultCache
from .data import PairDataset
from .metrics import MetricSuite
from .refinement import score_refinement
from .settings import EvalSettings

__all__ = ["Evaluator", "todo_indices"]


def todo_indices(ids: Sequence[str], cache: ResultCache, grid_ids: set[str], batch_size: int) -> list[int]:
    """Indices to compute: every batch of the fixed grid ``ids[k*B:(k+1)*B]`` that is not complete in the cache
    (a grid image also needs its thumbnail). Whole batches are redone, so a resumed run computes exactly the
    batches of a fresh run."""
    def done(image_id: str) -> bool:
        return image_id in cache and (image_id not in grid_ids or cache.thumb_path(image_id).exists())

    todo: list[int] = []
    for start in range(0, len(ids), batch_size):
        batch = range(start, min(start + batch_size, len(ids)))
        if not all(done(ids[i]) for i in batch):
            todo.extend(batch)
    return todo


class Evaluator:
    """Reconstructs (:func:`inversion.reconstruct.reconstruct`) and scores batches of a :class:`PairDataset`;
    accumulates the refiner's wall time per seed in :attr:`refine_seconds`."""

    def __init__(
        self,
        *,
        inverter: Inverter,
        suite: MetricSuite,
        settings: EvalSettings,
        to_protocol: Callable[[torch.Tensor], torch.Tensor],  # generator images -> protocol-size, quantized
        refiner: Callable[..., Any] | None = None,  # built from settings.refine; None: no refinement
    ):
        if (refiner is None) != (settings.refine is None):
            raise ValueError("Evaluator: pass a refiner exactly when settings.refine is set")
        self.inverter = inverter
        self.suite = suite
        self.settings = settings
        self.to_protocol = to_protocol
        self.refiner = refiner
        self.refine_seconds = dict.fromkeys(settings.refine.seeds, 0.0) if settings.refine else {}

    def evaluate_batch(self, batch: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[torch.Tensor]]:
        """Per-image records (metrics per ReStyle step; per refinement seed and scored step) and the protocol-size
        reconstructions per step (then the final refined ones per seed)."""
        s, suite = self.settings, self.suite
        device = self.inverter.latent_avg.device
        target = batch["target"].to(device)
        rec = reconstruct(
            self.inverter, batch["input"].to(device), target=target, refiner=self.refiner,
            seeds=s.refine.seeds if s.refine else (), num_iters=s.num_iters, noise_mode=s.noise_mode,
            snapshot_steps=s.refine.steps if s.refine else None, progress=s.progress)
        with torch.no_grad():
            recons = [self.to_protocol(step.images) for step in rec.encoder.steps]
            per_step = [suite.compute(recon, target) for recon in recons]
        records = [{"id": str(image_id), "steps": [{n: float(v[n][j]) for n in suite.names} for v in per_step]}
                   for j, image_id in enumerate(batch["id"])]
        if rec.refined:
            per_image, finals = score_refinement(rec.refined, self.inverter.generator, target,
                                                 to_protocol=self.to_protocol, suite=suite, noise_mode=s.noise_mode)
            for record, refined in zip(records, per_image):
                record["refine"] = refined
            for seed, seconds in rec.refine_seconds.items():
                self.refine_seconds[seed] += seconds
                recons.append(finals[seed])
        return records, recons

    def run(self, data: PairDataset, todo: list[int], cache: ResultCache, grid_ids: set[str]) -> int:
        """Evaluate the dataset items ``todo`` in batches, caching after every batch; returns how many images were
        computed."""
        if not todo:
            return 0
        s = self.settings
        loader = DataLoader(Subset(data, todo), batch_size=s.batch_size, shuffle=False,
                            num_workers=s.data.num_workers)
        done = 0
        with tqdm(total=len(todo), unit="img", desc="evaluate", disable=not s.progress, dynamic_ncols=True) as bar:
            for batch in loader:
                records, recons = self.evaluate_batch(batch)
                save_thumbs(batch, recons, cache, grid_ids, s.report.thumb_size)
                cache.add(records)
                done += len(records)
                bar.update(len(records))
                last = records[-1]["steps"][-1]
                bar.set_postfix({k: f"{v:.4g}" for k, v in last.items()}, refresh=False)
        return done


def save_thumbs(batch: Mapping[str, Any], recons: list[torch.Tensor], cache: ResultCache, wanted: set[str],
                size: int) -> None:
    """For the grid's ids: the strip target | every reconstruction, at ``size`` px per tile."""
    for j, image_id in enumerate(batch["id"]):
        if str(image_id) in wanted:
            save_strip([batch["target"][j].cpu()] + [r[j].cpu() for r in recons], cache.thumb_path(str(image_id)),
                       size)
