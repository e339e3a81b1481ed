"""Train an inversion encoder: ``python train.py [experiment=psp_ffhq] [key=value ...]``.

With no arguments this runs the embedded CPU demo (a tiny pSp encoder on the 64 px demo generator).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from inversion.build import build_inverter
from inversion.data import EpochSeededSampler, collate_skip_none
from inversion.imageio import resize_images
from inversion.losses import LossTerm, build_terms
from inversion.refine import build_refiner
from inversion.training import AtomicCheckpointIO, Collaborative, ExportInverter, InversionModule

log = logging.getLogger("train")


def build_losses(cfg: DictConfig) -> dict[str, LossTerm]:
    """The loss terms with a non-zero weight (zero-weight terms need no weight files); a null weights path is an
    error naming its ``paths.*`` key."""
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
    return Collaborative(refiner=refiner, weight=float(collab.weight), steps=int(collab.steps),
                         every_n_steps=int(collab.every_n_steps))


def _instantiate_dataset(cfg: DictConfig, **kwargs):
    """Instantiate a dataset, surfacing its own error (missing root, empty split) rather than Hydra's wrapper."""
    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, (FileNotFoundError, NotADirectoryError, ValueError)):
            raise e.__cause__ from None
        raise


def build_data(cfg: DictConfig, generator, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    extra = {"generator": generator} if cfg.from_generator else {}
    train_set, val_set = _instantiate_dataset(cfg.train, **extra), _instantiate_dataset(cfg.val, **extra)
    for split, ds in (("train", train_set), ("val", val_set)):
        if len(ds) == 0:
            raise ValueError(f"the {split} split is empty")
    kw = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers, collate_fn=collate_skip_none,
              persistent_workers=cfg.num_workers > 0)
    train = DataLoader(train_set, sampler=EpochSeededSampler(len(train_set), seed),
                       drop_last=len(train_set) >= cfg.batch_size, **kw)
    return train, DataLoader(val_set, shuffle=False, **kw)


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
        y = module.inverter.invert(x).images
        total += (resize_images(y, x.shape[-1], module.loss_resize_mode) - x).square().mean((1, 2, 3)).sum().item()
        count += x.shape[0]
    module.train(was_training)
    return total / max(count, 1), count


def resolve_ckpt(cfg: DictConfig) -> str | None:
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


def run(cfg: DictConfig) -> dict:
    pl.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    ckpt = resolve_ckpt(cfg)
    G = instantiate(cfg.generator).eval().requires_grad_(False)
    inverter = build_inverter(cfg.encoder, G)
    train_loader, val_loader = build_data(cfg.data, G, cfg.seed)
    train_set = train_loader.dataset
    module: InversionModule = instantiate(cfg.module, _partial_=True)(
        inverter=inverter,
        losses=build_losses(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        loss_size=cfg.loss_size,
        loss_resize_mode=cfg.loss_resize_mode,
        image_every_n_steps=cfg.image_every_n_steps,
        collaborative=build_collaborative(cfg),
        noise_seed=cfg.seed,
    )
    module.to(G.w_avg.device)  # a generator built on a GPU (generator.device=cuda) brings the encoder along
    module.set_fast_path(**cfg.fast)
    out_dir = Path(cfg.output_dir)
    callbacks = [instantiate(spec) for spec in cfg.callbacks.values() if isinstance(spec, DictConfig)
                 and spec.get("_target_")]  # checkpoints: iteration_<step>, best_model, last
    callbacks.append(ExportInverter(cfg.callbacks.export_path, OmegaConf.to_container(cfg.generator, resolve=True)))
    loggers = instantiate(cfg.logger) if cfg.logger else False
    trainer: pl.Trainer = instantiate(cfg.trainer, default_root_dir=str(out_dir), callbacks=callbacks,
                                      logger=loggers, plugins=[AtomicCheckpointIO()])
    if ckpt is not None:  # the starting point is the resumed encoder
        module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"], strict=False)
    module.train()
    summary_batches = cfg.get("summary_val_batches")
    start, seen = mean_val_l2(module, val_loader, summary_batches)
    log.info("validation L2 before training: %.5f (%d images)", start, seen)
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt)
    end, seen = mean_val_l2(module, val_loader, summary_batches)
    for lg in trainer.loggers:  # close wandb runs so a later run in this process gets its own
        if type(lg).__name__ == "WandbLogger" and getattr(lg, "_experiment", None) is not None:
            lg.experiment.finish()
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
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
