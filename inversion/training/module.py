"""LightningModule that trains an encoder through :meth:`Inverter.invert` against a frozen generator."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torchvision
from torch import nn

from ..inverter import InversionResult, Inverter, resize_images
from ..losses import LatentL2Loss

log = logging.getLogger(__name__)

INPUT_KINDS = ("images", "ws_avg", "ws_true")


@dataclass
class Collaborative:
    """Collaborative training: every ``every_n_steps`` training steps, refine the encoder's ``ws`` for ``steps``
    steps with ``refiner`` (:class:`inversion.refine.Refiner`) and add ``weight * LatentL2(ws, refined)``."""

    refiner: nn.Module
    weight: float = 1.0
    steps: int = 10
    every_n_steps: int = 1

    def __post_init__(self):
        if self.steps < 1 or self.every_n_steps < 1:
            raise ValueError(f"collaborative steps and every_n_steps must be >= 1, got {self.steps}, "
                             f"{self.every_n_steps}")


@dataclass
class LossTerm:
    """A weighted loss: ``module`` is called on (reconstruction, target) images, (ws, w_avg) or (ws, true ws)."""

    weight: float
    module: nn.Module
    inputs: str = "images"

    def __post_init__(self):
        if self.inputs not in INPUT_KINDS:
            raise ValueError(f"loss inputs must be one of {INPUT_KINDS}, got {self.inputs!r}")


class InversionModule(pl.LightningModule):
    """Encoder training for pSp / e4e / ReStyle: per-step losses, logging, image grids.

    Only the encoder is trained and checkpointed; the generator and loss networks are frozen, rebuilt
    from the config, and left out of checkpoints.
    """

    def __init__(
        self,
        *,
        inverter: Inverter,  # Encoder + frozen generator (inversion.build.build_inverter).
        losses: dict[str, LossTerm],  # Named weighted terms; each ReStyle step gets every term.
        optimizer: Callable[..., torch.optim.Optimizer],  # Partial: optimizer(params) -> Optimizer.
        scheduler: Callable[..., Any] | None = None,  # Optional partial: scheduler(optimizer).
        loss_size: int = 256,  # Images are compared at this size ...
        loss_resize_mode: str = "adaptive_avg",  # ... resized this way (pSp: face_pool).
        image_every_n_steps: int = 100,  # Write an image grid (input | each step | target) this often.
        max_grid_images: int = 8,
        collaborative: Collaborative | None = None,  # Refine the encoder's ws and pull them towards the result.
    ):
        super().__init__()
        self.inverter = inverter
        self.loss_terms = nn.ModuleDict({k: t.module for k, t in losses.items()})
        self.loss_spec = {k: (float(t.weight), t.inputs) for k, t in losses.items()}
        for m in self.loss_terms.values():
            m.requires_grad_(False)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.loss_size = loss_size
        self.loss_resize_mode = loss_resize_mode
        self.image_every_n_steps = image_every_n_steps
        self.max_grid_images = max_grid_images
        self.strict_loading = False  # frozen parts are not in checkpoints
        self.nonfinite_steps = 0
        self.collab = collaborative if collaborative is not None and collaborative.weight > 0 else None
        # registered as a submodule, so the refiner's (frozen, always eval) loss networks move with this module
        self.collab_refiner = None if self.collab is None else self.collab.refiner
        self.collab_loss = LatentL2Loss()

    # ------------------------------------------------------------------ checkpoint content
    def _frozen_prefixes(self) -> tuple[str, ...]:
        return ("inverter.generator.", "loss_terms.", "collab_refiner.")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        sd = checkpoint["state_dict"]
        for k in [k for k in sd if k.startswith(self._frozen_prefixes())]:
            del sd[k]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        sd = checkpoint["state_dict"]
        own = self.state_dict()
        for k, v in own.items():  # keep the frozen parts as rebuilt from the config
            if k.startswith(self._frozen_prefixes()):
                sd[k] = v

    # ------------------------------------------------------------------ losses
    def compute_losses(self, out: InversionResult, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss (sum over ReStyle steps of the weighted terms) and each term summed over steps."""
        target = resize_images(batch["image"], self.loss_size, self.loss_resize_mode)
        terms: dict[str, torch.Tensor] = {}
        total = target.new_zeros(())
        for step in out.steps:
            y_hat = None
            for name, (weight, kind) in self.loss_spec.items():
                module = self.loss_terms[name]
                if kind == "images":
                    if y_hat is None:
                        y_hat = resize_images(step.images, self.loss_size, self.loss_resize_mode)
                    value = module(y_hat, target)
                elif kind == "ws_avg":
                    value = module(step.ws, self.inverter.latent_avg)
                else:
                    if "ws" not in batch:
                        raise KeyError(f"loss '{name}' needs the true ws of the training images (a SeedDataset)")
                    value = module(step.ws, batch["ws"])
                terms[name] = terms.get(name, 0) + value.detach()
                total = total + weight * value
        return total, terms

    def _step(self, batch: dict | None, stage: str) -> torch.Tensor | None:
        if batch is None:  # every image of the batch was unreadable (skipped and counted by the dataset)
            return None
        x = batch["image"]
        out = self.inverter.invert(x)
        total, terms = self.compute_losses(out, batch)
        if stage == "train":
            total = self.add_collaborative(out, x, total, terms)
        if not torch.isfinite(total):
            self.nonfinite_steps += 1
            log.error("non-finite %s loss at step %d (%s); stopping. The last good checkpoint is kept.",
                      stage, self.global_step, {k: float(v) for k, v in terms.items()})
            if self.trainer is not None:
                self.trainer.should_stop = True
            return None
        bs = x.shape[0]
        self.log(f"{stage}/loss", total.detach(), prog_bar=True, batch_size=bs, sync_dist=stage == "val")
        for name, value in terms.items():
            self.log(f"{stage}/loss_{name}", value, batch_size=bs, sync_dist=stage == "val")
        final_l2 = (out.images.detach() - resize_images(x, out.images.shape[-1], self.loss_resize_mode)).square()
        self.log(f"{stage}/l2_final", final_l2.mean(), batch_size=bs, sync_dist=stage == "val")
        if stage == "train" and self.image_every_n_steps and self.global_step % self.image_every_n_steps == 0:
            self.write_grid(x, out, f"train_{self.global_step:07d}")
        return total

    def add_collaborative(self, out: InversionResult, x: torch.Tensor, total: torch.Tensor,
                          terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """``total`` plus the weighted collaborative term on its steps (logged as ``loss_collab``, with
        ``loss_collab_refine_gain``); ``total`` unchanged when collaborative mode is off or not due."""
        if self.collab is None or self.global_step % self.collab.every_n_steps != 0:
            return total
        collab, gain = self.collaborative_loss(out, x)
        terms["collab"] = collab.detach()
        terms["collab_refine_gain"] = gain
        return total + self.collab.weight * collab

    def collaborative_loss(self, out: InversionResult, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Collaborative learning (Guan et al. 2020): refine the encoder's final ``ws`` (detached) for ``steps``
        optimization steps against the batch's images, then ``LatentL2(ws, refined.detach())``. Also returns how
        much refinement lowered its reconstruction loss (mean over the batch), a sign the teacher is useful."""
        target = resize_images(x.detach(), self.loss_size, self.loss_resize_mode)
        with torch.enable_grad():
            result = self.collab_refiner(self.inverter.generator, target, ws_init=out.ws.detach(),
                                         num_steps=self.collab.steps, progress=False)
        recon = result.curves["recon"]
        gain = (recon[0] - recon[-1]).mean().to(x.device)
        return self.collab_loss(out.ws, result.ws.detach().to(out.ws.dtype)), gain

    def training_step(self, batch: dict | None, batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "train")

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        self._step(batch, "val")
        if batch_idx == 0 and batch is not None and self.trainer is not None and not self.trainer.sanity_checking:
            self.write_grid(batch["image"], self.inverter.invert(batch["image"]), f"val_{self.global_step:07d}")

    # ------------------------------------------------------------------ images
    @torch.no_grad()
    def write_grid(self, x: torch.Tensor, out: InversionResult, name: str) -> Path | None:
        """Rows of input | reconstruction after each step | (for generated data, the target is the input)."""
        if self.trainer is None or not self.trainer.is_global_zero:
            return None
        n = min(self.max_grid_images, x.shape[0])
        size = x.shape[-1]
        cols = [x[:n]] + [resize_images(s.images[:n].float(), size, self.loss_resize_mode) for s in out.steps]
        grid = torchvision.utils.make_grid(torch.stack(cols, 1).flatten(0, 1).clamp(-1, 1) * 0.5 + 0.5,
                                           nrow=len(cols))
        root = Path(self.trainer.default_root_dir) / "images"
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{name}.png"
        torchvision.utils.save_image(grid, path)
        for lg in self.loggers:
            if hasattr(lg, "log_image"):
                lg.log_image(key=name.split("_")[0] + "/grid", images=[grid], step=self.global_step)
            elif hasattr(getattr(lg, "experiment", None), "add_image"):
                lg.experiment.add_image(name.split("_")[0] + "/grid", grid, self.global_step)
        return path

    # ------------------------------------------------------------------ speed
    def set_fast_path(
        self,
        *,
        channels_last: bool = False,  # Encoder and loss networks in NHWC memory format.
        compile: str | None = None,  # torch.compile mode for the encoder and generator synthesis; None: eager.
        compile_backend: str = "inductor",  # torch.compile backend.
        fused_modconv: bool = True,  # False: modulated convs as activation scaling + shared conv + demodulation.
    ) -> InversionModule:
        """train.py's ``fast.*`` switches: :meth:`Inverter.set_fast_path` plus the loss networks' memory format
        (bf16 is Lightning's ``precision``). Returns ``self``."""
        self.inverter.set_fast_path(channels_last=channels_last, compile=compile, compile_backend=compile_backend,
                                    fused_modconv=fused_modconv)
        if channels_last:
            for m in self.loss_terms.values():
                m.to(memory_format=torch.channels_last)
        return self

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        opt = self.optimizer_factory([p for p in self.inverter.encoder.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(opt), "interval": "step"}}

    def train(self, mode: bool = True):
        super().train(mode)
        self.inverter.generator.eval()
        for m in self.loss_terms.values():
            m.eval()
        return self
