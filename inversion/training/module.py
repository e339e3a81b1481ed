"""LightningModule that trains an encoder through :meth:`Inverter.invert` against a frozen generator."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torchvision
from torch import nn

from ..imageio import resize_images
from ..inverter import InversionResult, InversionStep, Inverter
from ..losses import EmbeddingSimilarityLoss, LatentL2Loss, LossTerm
from ..reconstruct import refine_latents

log = logging.getLogger(__name__)

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


NOISE_MODES = ("random", "const")
NOISE_STAGES = ("train", "val")


def step_noise_seed(base_seed: int, stage: str, index: int) -> int:
    """Seed of the generator noise of one training step (``index`` = global step) or validation batch (``index`` =
    batch index): a hash of (the run's seed, stage, index), so a resumed run draws exactly the noise of an
    uninterrupted one. 32 bits: torch's CPU generator keeps only the low 32 bits of a seed."""
    if stage not in NOISE_STAGES:
        raise ValueError(f"stage must be one of {NOISE_STAGES}, got {stage!r}")
    digest = hashlib.sha256(f"{int(base_seed)}/{stage}/{int(index)}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class InversionModule(pl.LightningModule):
    """Encoder training for pSp / e4e / ReStyle: one training step as the official trainers take it.

    Manual optimisation: each ReStyle iteration's loss is back-propagated before the next iteration runs (the
    official ``perform_train_iteration_on_batch``), so one iteration's autograd graph is alive at a time; the
    encoder's optimizer steps once per batch, or with ``accumulate_grad_batches`` as stylegan3-editing's coach.
    The generator renders with fresh random noise every forward while training and validating (the official
    ``randomize_noise=True``), drawn from a generator seeded per step (:func:`step_noise_seed`), so runs and resumed
    runs are reproducible. Logs the last iteration's terms under the official names. Only the encoder is trained and
    checkpointed; the generator and loss networks are frozen, rebuilt from the config, and left out of checkpoints.
    """

    def __init__(
        self,
        *,
        inverter: Inverter,  # Encoder + frozen generator (inversion.build.build_inverter).
        losses: dict[str, LossTerm],  # Named weighted terms; each ReStyle iteration gets every term.
        optimizer: Callable[..., torch.optim.Optimizer],  # Partial: optimizer(params) -> Optimizer.
        scheduler: Callable[..., Any] | None = None,  # Optional partial: scheduler(optimizer), stepped every step.
        loss_size: int = 256,  # Images are compared at this size ...
        loss_resize_mode: str = "adaptive_avg",  # ... resized this way (pSp: face_pool).
        image_every_n_steps: int = 100,  # Write an image grid (input | each step | target) this often.
        max_grid_images: int = 8,
        collaborative: Collaborative | None = None,  # Refine the encoder's ws and pull them towards the result.
        noise_mode: str = "random",  # Generator noise in training and validation: 'random' (official) or 'const'.
        noise_seed: int = 0,  # Seeds the per-step noise (train.py passes the run's seed).
        accumulate_grad_batches: int = 1,  # Encoder optimizer step after batch b of an epoch when b % n == 0, the
        # gradients of the batches in between summed (stylegan3-editing's coach: n = int(8 / batch_size), so batch 0
        # of every epoch steps alone; gradients are zeroed at each epoch start). global_step counts batches.
    ):
        super().__init__()
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if int(accumulate_grad_batches) < 1:
            raise ValueError(f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
        self.accumulate_grad_batches = int(accumulate_grad_batches)
        self.automatic_optimization = False
        self.inverter = inverter
        self.loss_terms = nn.ModuleDict({k: t.module for k, t in losses.items()})
        self.loss_spec = {k: (float(t.weight), t.inputs) for k, t in losses.items()}
        self.loss_crops = {k: t.crop for k, t in losses.items() if t.crop is not None}
        for m in self.loss_terms.values():
            m.requires_grad_(False)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.loss_size = loss_size
        self.loss_resize_mode = loss_resize_mode
        self.image_every_n_steps = image_every_n_steps
        self.max_grid_images = max_grid_images
        self.noise_mode, self.noise_seed = noise_mode, int(noise_seed)
        self.strict_loading = False  # frozen parts are not in checkpoints
        self.nonfinite_steps = 0
        self.collab = collaborative if collaborative is not None and collaborative.weight > 0 else None
        if self.collab is not None and getattr(inverter, "content_box", None) is not None:
            raise ValueError("collaborative training refines whole generator frames; a letterboxed generator "
                             "(encoder.content_box, cars) is not supported yet")
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

    # ------------------------------------------------------------------ noise
    def noise_generator(self, stage: str, index: int) -> torch.Generator | None:
        """The generator the step's noise is drawn from (on this module's device); None with ``noise_mode='const'``."""
        if self.noise_mode == "const":
            return None
        return torch.Generator(device=self.device).manual_seed(step_noise_seed(self.noise_seed, stage, index))

    def iterate(self, x: torch.Tensor, stage: str, index: int):
        """:meth:`Inverter.iterate` with this module's training / validation noise."""
        gen = self.noise_generator(stage, index)
        return self.inverter.iterate(x, noise_mode="const" if gen is None else "random", noise_generator=gen)

    # ------------------------------------------------------------------ losses
    def step_losses(self, step: InversionStep, target: torch.Tensor, batch: dict
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum and the detached value of each configured term for one inversion step (one ReStyle
        iteration); ``target`` is the batch at ``loss_size``. An ID term also gives the official ``id_improve``.
        A term with a ``crop`` compares that box of both images (pSp's ``lpips_crop`` / ``l2_crop``)."""
        terms: dict[str, torch.Tensor] = {}
        total = target.new_zeros(())
        y_hat = None
        for name, (weight, kind) in self.loss_spec.items():
            module = self.loss_terms[name]
            if kind == "images":
                if y_hat is None:
                    y_hat = resize_images(step.images, self.loss_size, self.loss_resize_mode)
                a, b = y_hat, target
                if name in self.loss_crops:
                    top, bottom, left, right = self.loss_crops[name]
                    a, b = a[..., top:bottom, left:right], b[..., top:bottom, left:right]
                value = module(a, b)
            elif kind == "ws_avg":
                value = module(step.ws, self.inverter.latent_avg)
            else:
                if "ws" not in batch:
                    raise KeyError(f"loss '{name}' needs the true ws of the training images (a SeedDataset)")
                value = module(step.ws, batch["ws"])
            terms[name] = value.detach()
            if isinstance(module, EmbeddingSimilarityLoss) and name not in self.loss_crops:
                # official: mean(<e(y_hat), e(y)> - <e(y), e(x)>); when the input x is the target y the second
                # similarity is 1 and id_improve = -loss_id; an RGB source (pSp's tasks) is embedded
                source = batch.get("source")
                if source is None or source.shape[1] != 3:
                    terms["id_improve"] = -value.detach()
                else:
                    with torch.no_grad():
                        x_small = resize_images(source, self.loss_size, self.loss_resize_mode)
                        terms["id_improve"] = (1 - value.detach()) - module.similarity(target, x_small).mean()
            total = total + weight * value
        return total, terms

    def extra_losses(self, step: InversionStep, t: int, last: bool, terms: dict[str, torch.Tensor]
                     ) -> torch.Tensor | None:
        """Terms beyond the configured ones for iteration ``t`` (e4e: adversarial and delta terms); adds their
        detached values to ``terms`` and returns their weighted sum, or None."""
        return None

    def compute_losses(self, out: InversionResult, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sum over the steps of ``out`` of :meth:`step_losses` (and the step-summed terms), e.g. for benchmarks."""
        target = resize_images(batch["image"], self.loss_size, self.loss_resize_mode)
        total, terms = target.new_zeros(()), {}
        for step in out.steps:
            value, step_terms = self.step_losses(step, target, batch)
            total = total + value
            for k, v in step_terms.items():
                terms[k] = terms.get(k, 0) + v
        return total, terms

    def encoder_phase(self, batch: dict, stage: str, index: int
                      ) -> tuple[InversionResult, torch.Tensor, dict[str, torch.Tensor]] | None:
        """Invert the batch and score every step; in training, back-propagate each step's loss before the next step
        is computed (one step's graph alive at a time). Returns the detached steps (images kept for the grid only),
        the last step's loss and terms (the official logs), or None after a non-finite loss (nothing back-propagated
        from it; the caller skips the optimizer step)."""
        x = batch.get("source", batch["image"])  # the encoder's input: pSp's tasks give a source, else the target
        target = resize_images(batch["image"], self.loss_size, self.loss_resize_mode)
        train = stage == "train"
        keep_images = self._grid_due(index) if train else index == 0  # every step's images: only for a grid
        num_iters = self.inverter.num_iters
        kept = InversionResult()
        for t, step in enumerate(self.iterate(x, stage, index)):
            last = t == num_iters - 1
            total, terms = self.step_losses(step, target, batch)
            extra = self.extra_losses(step, t, last, terms)
            if extra is not None:
                total = total + extra
            if train and last:
                total = self.add_collaborative(step, x, total, terms)
            if not torch.isfinite(total):
                self.nonfinite_steps += 1
                log.error("non-finite %s loss at step %d, iteration %d (%s); stopping. The last good checkpoint is "
                          "kept.", stage, self.global_step, t, {k: float(v) for k, v in terms.items()})
                if self.trainer is not None:
                    self.trainer.should_stop = True
                return None
            if train:
                self.manual_backward(total)
            images = step.images.detach() if (keep_images or last) and step.images is not None else None
            kept.steps.append(InversionStep(ws=step.ws.detach(), images=images, delta=step.delta.detach()))
            del step  # release this step's tensors before the loop computes the next one
        return kept, total.detach(), terms

    def add_collaborative(self, step: InversionStep, x: torch.Tensor, total: torch.Tensor,
                          terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """``total`` plus the weighted collaborative term on its steps (logged as ``loss_collab``, with
        ``loss_collab_refine_gain``); ``total`` unchanged when collaborative mode is off or not due."""
        if self.collab is None or self.global_step % self.collab.every_n_steps != 0:
            return total
        collab, gain = self.collaborative_loss(step, x)
        terms["collab"] = collab.detach()
        terms["collab_refine_gain"] = gain
        return total + self.collab.weight * collab

    def collaborative_loss(self, out: InversionResult | InversionStep, x: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Collaborative learning (Guan et al. 2020): refine the encoder's final ``ws`` (detached) for ``steps``
        optimization steps against the batch's images, then ``LatentL2(ws, refined.detach())``. Also returns how
        much refinement lowered its reconstruction loss (mean over the batch), a sign the teacher is useful."""
        target = resize_images(x.detach(), self.loss_size, self.loss_resize_mode)
        result = refine_latents(self.collab_refiner, self.inverter.generator, target, out.ws, seed="encoder",
                                num_steps=self.collab.steps, progress=False)
        recon = result.curves["recon"]
        gain = (recon[0] - recon[-1]).mean().to(x.device)
        return self.collab_loss(out.ws, result.ws.detach().to(out.ws.dtype)), gain

    # ------------------------------------------------------------------ steps
    def _encoder_optimizer(self):
        opts = self.optimizers()
        return opts[0] if isinstance(opts, list) else opts

    def before_encoder_phase(self, batch: dict, stage: str, index: int) -> dict[str, torch.Tensor]:
        """Work before the encoder's phase of a step (e4e: the discriminator phase); returns values to log."""
        return {}

    def on_train_epoch_start(self) -> None:
        self._encoder_optimizer().zero_grad(set_to_none=True)  # gradients never carry across epochs (official)

    def training_step(self, batch: dict | None, batch_idx: int) -> None:
        if batch is None:  # every image of the batch was unreadable (skipped and counted by the dataset)
            return None
        step = self.global_step  # counts training batches (one optimizer step each, unless accumulating)
        logs = self.before_encoder_phase(batch, "train", step)
        opt = self._encoder_optimizer()
        done = self.encoder_phase(batch, "train", step)
        if done is None:
            opt.zero_grad(set_to_none=True)
            return None
        out, total, terms = done
        if batch_idx % self.accumulate_grad_batches == 0:
            opt.step()
            scheduler = self.lr_schedulers()
            if scheduler is not None:
                scheduler.step()
            # parameters without a gradient at the next step (e4e's inactive heads) are skipped by the optimizer
            opt.zero_grad(set_to_none=True)
        else:
            self._count_batch_as_step()
        self.log_step("train", batch["image"], out, total, {**logs, **terms})
        if self._grid_due(step):
            self.write_grid(batch["image"], out, f"train_{step:07d}", batch.get("source"))
        return None

    def _count_batch_as_step(self) -> None:
        """A batch whose gradients accumulate still advances ``global_step`` (the official coach counts batches: its
        max_steps, intervals, R1 schedule and noise seeds are in batches). Lightning counts the encoder optimizer's
        steps in manual optimisation; this advances that counter, which checkpoints and resumes restore."""
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()

    def _grid_due(self, step: int) -> bool:
        return bool(self.image_every_n_steps) and step % self.image_every_n_steps == 0

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        if batch is None:
            return None
        logs = self.before_encoder_phase(batch, "val", batch_idx)
        done = self.encoder_phase(batch, "val", batch_idx)
        if done is None:  # logged as NaN, so a best-model checkpoint never picks this validation
            self.log("val/loss", float("nan"), batch_size=batch["image"].shape[0], sync_dist=True)
            return None
        out, total, terms = done
        self.log_step("val", batch["image"], out, total, {**logs, **terms})
        if batch_idx == 0 and self.trainer is not None and not self.trainer.sanity_checking:
            self.write_grid(batch["image"], out, f"val_{self.global_step:07d}", batch.get("source"))
        return None

    def log_step(self, stage: str, x: torch.Tensor, out: InversionResult, total: torch.Tensor,
                 terms: dict[str, torch.Tensor]) -> None:
        """``{stage}/loss`` and each term of the last iteration (the official ``loss_dict``); configured terms as
        ``loss_<name>``, the official extra terms (e4e) under their own names; the final image's pixel L2."""
        bs, sync = x.shape[0], stage == "val"
        self.log(f"{stage}/loss", total, prog_bar=True, batch_size=bs, sync_dist=sync)
        for name, value in terms.items():
            key = f"loss_{name}" if name in self.loss_spec or name.startswith("collab") else name
            self.log(f"{stage}/{key}", value, batch_size=bs, sync_dist=sync)
        final_l2 = (out.images - resize_images(x, out.images.shape[-2:], self.loss_resize_mode)).square()
        self.log(f"{stage}/l2_final", final_l2.mean(), batch_size=bs, sync_dist=sync)

    # ------------------------------------------------------------------ images
    @torch.no_grad()
    def write_grid(self, x: torch.Tensor, out: InversionResult, name: str, source: torch.Tensor | None = None
                   ) -> Path | None:
        """Rows of input | reconstruction after each step (the target is the input), or with a ``source`` (pSp's
        tasks: a sketch, a segmentation map, a low-resolution photo) source | each step | target."""
        if self.trainer is None or not self.trainer.is_global_zero:
            return None
        n = min(self.max_grid_images, x.shape[0])
        size = x.shape[-2:]
        first = x[:n] if source is None else resize_images(self._display(source[:n]).float(), size, "nearest")
        cols = [first] + [resize_images(s.images[:n].float(), size, self.loss_resize_mode) for s in out.steps]
        if source is not None:
            cols.append(x[:n])
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

    def _display(self, source: torch.Tensor) -> torch.Tensor:
        """An encoder input as an RGB image in [-1, 1] (the inverter's input spec knows gray and label maps)."""
        spec = getattr(self.inverter, "input_spec", None)
        if spec is not None:
            return spec.display(source)
        return source if source.shape[1] == 3 else source[:, :1].repeat(1, 3, 1, 1)

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
