"""Assemble a training run from the composed ``conf/train.yaml``: ``train.py`` only calls :func:`train`.

Each config group has one owner here: ``generator`` + ``encoder`` -> the inverter (:func:`inversion.build.
build_inverter`), ``loss`` -> the terms (:func:`inversion.losses.build_terms`), ``module`` + ``optimizer`` +
``scheduler`` + ``collaborative`` / ``refine`` -> the LightningModule (:func:`build_module`), ``data`` -> the
:class:`InversionDataModule`, ``trainer`` / ``callbacks`` / ``logger`` -> the Lightning trainer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..build import build_inverter
from ..config import instantiate as instantiate_surfacing
from ..data import EpochSeededSampler, collate_skip_none
from ..imageio import resize_images
from ..losses import LossTerm, build_terms
from ..refine import Refiner, build_refiner
from .callbacks import AtomicCheckpointIO, ExportInverter
from .module import Collaborative, InversionModule

__all__ = ["InversionDataModule", "build_collaborative", "build_losses", "build_module", "build_trainer",
           "mean_val_l2", "resolve_ckpt", "train"]

log = logging.getLogger(__name__)


class InversionDataModule(pl.LightningDataModule):
    """The ``data`` group: train / val datasets (Hydra specs, built in :meth:`setup`), an epoch-seeded shuffling
    sampler sharded over DDP ranks, and batches that drop unreadable images (``collate_skip_none``)."""

    def __init__(
        self,
        *,
        train: Any,  # Dataset spec ({_target_: ...}) of the training split.
        val: Any,  # Dataset spec of the validation split.
        batch_size: int = 8,
        num_workers: int = 0,
        from_generator: bool = False,  # The datasets sample the generator (they get `generator=`).
        generator: nn.Module | None = None,  # The frozen generator, for from_generator datasets.
        seed: int = 0,  # Shuffling seed (the permutation of epoch e is drawn from seed + e).
    ):
        super().__init__()
        if from_generator and generator is None:
            raise ValueError("data.from_generator=true needs the generator")
        self.specs = {"train": train, "val": val}
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.generator = generator if from_generator else None
        self.seed = int(seed)
        self.datasets: dict[str, Dataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        extra = {} if self.generator is None else {"generator": self.generator}
        for split, spec in self.specs.items():
            ds = instantiate_surfacing(spec, surface=(FileNotFoundError, NotADirectoryError, ValueError), **extra)
            if len(ds) == 0:
                raise ValueError(f"the {split} split is empty")
            self.datasets[split] = ds

    def _loader(self, split: str, **kw: Any) -> DataLoader:
        self.setup()
        return DataLoader(self.datasets[split], batch_size=self.batch_size, num_workers=self.num_workers,
                          collate_fn=collate_skip_none, persistent_workers=self.num_workers > 0, **kw)

    def train_dataloader(self) -> DataLoader:
        n = len(self.datasets.get("train") or self._loader("train").dataset)
        return self._loader("train", sampler=EpochSeededSampler(n, self.seed), drop_last=n >= self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)


def build_losses(cfg: DictConfig) -> dict[str, LossTerm]:
    """The ``loss`` group's terms with a non-zero weight (zero-weight terms need no weight files); a null weights
    path is an error naming its ``paths.*`` key."""
    return build_terms(cfg, missing="error", what="loss")


def build_collaborative(cfg: DictConfig) -> Collaborative | None:
    """Collaborative mode (``collaborative.weight > 0``): the ``refine`` group's refiner, run for
    ``collaborative.steps`` steps on the encoder's output every ``collaborative.every_n_steps`` steps."""
    collab = cfg.get("collaborative")
    if collab is None or float(collab.weight) == 0:
        return None
    refiner = build_refiner(cfg.refine) if cfg.get("refine") is not None else None
    if refiner is None:
        raise ValueError("collaborative.weight > 0 needs a refiner: choose refine=image2stylegan|projector|noise "
                         "(or use experiment=collaborative_demo / collaborative_psp_ffhq)")
    if not isinstance(refiner, Refiner):  # pivotal tuning fits the generator, not the latents the encoder learns
        raise ValueError(f"collaborative learning needs a latent refiner (refine=image2stylegan|projector|noise); "
                         f"refine={cfg.refine.get('name')} builds a {type(refiner).__name__}")
    return Collaborative(refiner=refiner, weight=float(collab.weight), steps=int(collab.steps),
                         every_n_steps=int(collab.every_n_steps))


def build_module(cfg: DictConfig, generator: nn.Module | None = None) -> InversionModule:
    """The ``module`` group's LightningModule with its inverter, losses, optimizer, scheduler and collaborative
    refiner, on the generator's device (``generator``: an already built one, else ``cfg.generator``)."""
    G = (generator if generator is not None else instantiate(cfg.generator)).eval().requires_grad_(False)
    module = instantiate(cfg.module, _partial_=True)(
        inverter=build_inverter(cfg.encoder, G),
        losses=build_losses(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        collaborative=build_collaborative(cfg),
        noise_seed=int(cfg.get("seed", 0)),
    )
    module.to(G.w_avg.device)  # a generator built on a GPU (generator.device=cuda) brings the encoder along
    if cfg.get("fast"):
        module.set_fast_path(**cfg.fast)
    return module


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    """The Lightning trainer with the ``callbacks`` (checkpoints, the inference export) and ``logger`` groups."""
    callbacks = [instantiate(spec) for spec in cfg.callbacks.values() if isinstance(spec, DictConfig)
                 and spec.get("_target_")]  # checkpoints: iteration_<step>, best_model, last
    callbacks.append(ExportInverter(cfg.callbacks.export_path, OmegaConf.to_container(cfg.generator, resolve=True)))
    loggers = instantiate(cfg.logger) if cfg.logger else False
    return instantiate(cfg.trainer, default_root_dir=str(cfg.output_dir), callbacks=callbacks, logger=loggers,
                       plugins=[AtomicCheckpointIO()])


@torch.no_grad()
def mean_val_l2(module: InversionModule, loader: DataLoader, max_batches: int | None = None) -> tuple[float, int]:
    """Mean per-pixel squared error of the final reconstruction (the inference path: stored noise) on the first
    ``max_batches`` validation batches (None: all), at the input size; and the number of images it saw."""
    was_training = module.training
    module.eval()
    total, count = 0.0, 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        if batch is None:
            continue
        x = batch["image"].to(device=module.device, dtype=module.dtype)  # a 64-true run leaves the module float64
        source = batch.get("source", batch["image"]).to(device=module.device, dtype=module.dtype)  # pSp's tasks
        y = module.inverter.invert(source).images
        total += (resize_images(y, x.shape[-2:], module.loss_resize_mode) - x).square().mean((1, 2, 3)).sum().item()
        count += x.shape[0]
    module.train(was_training)
    return total / max(count, 1), count


def resolve_ckpt(cfg: DictConfig) -> str | None:
    """``ckpt_path``: null (fresh), ``last`` (this run's last.ckpt) or a file; a missing one is an error."""
    if cfg.ckpt_path in (None, "null"):
        return None
    if cfg.ckpt_path == "last":
        path = Path(cfg.output_dir) / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path=last but {path} does not exist (is name={cfg.name} right?)")
        return str(path)
    if not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {cfg.ckpt_path}")
    return str(cfg.ckpt_path)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train from the composed ``conf/train.yaml``; writes ``<output_dir>/train_summary.json`` and returns it."""
    pl.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    ckpt = resolve_ckpt(cfg)
    module = build_module(cfg)
    data: InversionDataModule = instantiate(cfg.data, generator=module.inverter.generator, seed=cfg.seed,
                                            _recursive_=False)
    data.setup("fit")
    trainer = build_trainer(cfg)
    if ckpt is not None:  # the starting point is the resumed encoder
        module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"], strict=False)
    module.train()
    summary_batches = cfg.get("summary_val_batches")
    start, seen = mean_val_l2(module, data.val_dataloader(), summary_batches)
    log.info("validation L2 before training: %.5f (%d images)", start, seen)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    end, seen = mean_val_l2(module, data.val_dataloader(), summary_batches)
    for lg in trainer.loggers:  # close wandb runs so a later run in this process gets its own
        if type(lg).__name__ == "WandbLogger" and getattr(lg, "_experiment", None) is not None:
            lg.experiment.finish()
    train_set = data.datasets["train"]
    summary = {"name": cfg.name, "global_step": trainer.global_step, "val_l2_start": start, "val_l2_end": end,
               "improvement_factor": start / end if end > 0 else float("inf"), "val_l2_images": seen,
               "nonfinite_steps": module.nonfinite_steps, "export": str(cfg.callbacks.export_path),
               # counted in this process (with num_workers > 0 each worker warns for its own skips)
               "skipped_train_images": getattr(train_set, "num_bad", 0),
               "skipped_train_files": sorted(set(getattr(train_set, "bad_paths", [])))}
    if summary["skipped_train_images"]:
        log.warning("skipped %d unusable training images: %s", summary["skipped_train_images"],
                    summary["skipped_train_files"][:10])
    log.info("validation L2: %.5f -> %.5f (%.1fx lower) after %d steps; inference export: %s",
             start, end, summary["improvement_factor"], trainer.global_step, cfg.callbacks.export_path)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
