"""e4e training: latent discriminator, progressive delta schedule and delta regularisation.

Follows e4e's coach: every step the latent discriminator D (its own optimizer) sees real codes from the
mapping network and fake codes from the encoder (through a pool); every ``d_reg_every`` steps an R1 penalty
follows; the encoder is trained with the image losses + ``adv_weight`` * non-saturating adversarial loss on
the active layers + ``delta_reg_weight`` * delta regularisation. Stage k (deltas 1..k active) starts at step
``progressive_start + (k - 1) * progressive_step_every``; stage 0 = the single base w.
"""

from __future__ import annotations

from typing import Any

import torch

from ..losses import (
    DeltaRegLoss,
    LatentCodesDiscriminator,
    LatentCodesPool,
    dims_to_discriminate,
    discriminator_loss,
    fake_codes_for_discriminator,
    generator_adv_loss,
    r1_penalty,
)
from .module import InversionModule


class E4EModule(InversionModule):
    """:class:`InversionModule` with e4e's latent discriminator and progressive training (manual optimisation)."""

    def __init__(
        self,
        *,
        adv_weight: float = 0.1,  # e4e --w_discriminator_lambda.
        d_lr: float = 2e-5,  # e4e --w_discriminator_lr (Adam).
        r1_gamma: float = 10.0,  # e4e --r1.
        d_reg_every: int = 16,  # e4e --d_reg_every.
        pool_size: int = 50,  # e4e --w_pool_size (fake and real pools).
        delta_reg_weight: float = 2e-4,  # e4e --delta_norm_lambda.
        progressive_start: int | None = 20000,  # e4e --progressive_start; None: all deltas from the start.
        progressive_step_every: int = 2000,  # e4e --progressive_step_every.
        d_num_layers: int = 4,  # latent D depth.
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.automatic_optimization = False
        inv = self.inverter
        self.discriminator = LatentCodesDiscriminator(w_dim=inv.generator.w_dim, num_layers=d_num_layers)
        self.adv_weight, self.d_lr = adv_weight, d_lr
        self.r1_gamma, self.d_reg_every = r1_gamma, d_reg_every
        self.fake_pool, self.real_pool = LatentCodesPool(pool_size, seed=0), LatentCodesPool(pool_size, seed=1)
        self.delta_reg = DeltaRegLoss()
        self.delta_reg_weight = delta_reg_weight
        self.progressive_start, self.progressive_step_every = progressive_start, progressive_step_every
        self.z_generator = torch.Generator().manual_seed(2)  # real codes; its state is checkpointed

    # ------------------------------------------------------------------ progressive schedule
    def stage_at(self, step: int) -> int:
        """Number of active deltas at ``step`` (num_ws = e4e's final 'Inference' stage)."""
        num_ws = self.inverter.num_ws
        if self.progressive_start is None:
            return num_ws
        if step < self.progressive_start:
            return 0
        return min(num_ws, 1 + (step - self.progressive_start) // self.progressive_step_every)

    def _set_stage(self) -> int:
        stage = self.stage_at(self.global_step)
        self.inverter.encoder.progressive_stage = stage
        return stage

    def on_fit_start(self) -> None:  # also after a resume: the stage follows from the step
        self._set_stage()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["e4e"] = {"progressive_stage": self.stage_at(self.global_step),
                             "fake_pool": [w.cpu() for w in self.fake_pool.ws],
                             "real_pool": [w.cpu() for w in self.real_pool.ws],
                             "fake_pool_rng": self.fake_pool.rng.getstate(),
                             "real_pool_rng": self.real_pool.rng.getstate(),
                             "z_generator": self.z_generator.get_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("e4e", {})
        self.fake_pool.ws = list(state.get("fake_pool", []))
        self.real_pool.ws = list(state.get("real_pool", []))
        if "fake_pool_rng" in state:
            self.fake_pool.rng.setstate(state["fake_pool_rng"])
            self.real_pool.rng.setstate(state["real_pool_rng"])
            self.z_generator.set_state(state["z_generator"])

    # ------------------------------------------------------------------ steps
    @torch.no_grad()
    def _real_codes(self, n: int) -> torch.Tensor:
        G = self.inverter.generator
        z = torch.randn(n, G.z_dim, generator=self.z_generator).to(self.device)
        return self.real_pool.query(G.style(z))

    def training_step(self, batch: dict | None, batch_idx: int) -> None:
        if batch is None:
            return None
        enc_opt, d_opt = self.optimizers()
        # D steps use the raw optimizer: Lightning counts every wrapped optimizer.step() in global_step, and
        # global_step must count encoder steps (max_steps, the progressive schedule, R1 cadence).
        d_opt = d_opt.optimizer
        stage = self._set_stage()
        x = batch["image"]
        n = x.shape[0]
        dims = dims_to_discriminate(self.inverter.num_ws, stage)
        d_on = self.adv_weight > 0
        if d_on:  # discriminator step (+ lazy R1)
            self.discriminator.requires_grad_(True)
            with torch.no_grad():
                fake = fake_codes_for_discriminator(self.inverter.invert(x, render=False).ws, dims, self.fake_pool)
            real = self._real_codes(n)
            d_loss = discriminator_loss(self.discriminator, real, fake)
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            d_opt.step()
            self.log("train/d_loss", d_loss.detach(), batch_size=n)
            if self.global_step % self.d_reg_every == 0:
                r1 = r1_penalty(self.discriminator, self._real_codes(n), self.r1_gamma, self.d_reg_every)
                d_opt.zero_grad(set_to_none=True)
                self.manual_backward(r1)
                d_opt.step()
                self.log("train/d_r1", r1.detach(), batch_size=n)
            self.discriminator.requires_grad_(False)
        # encoder step
        out = self.inverter.invert(x)
        total, terms = self.compute_losses(out, batch)
        total = self.add_collaborative(out, x, total, terms)
        if d_on:
            adv = generator_adv_loss(self.discriminator, out.ws, dims)
            terms["adv"] = adv.detach()
            total = total + self.adv_weight * adv
        if self.delta_reg_weight > 0 and stage < self.inverter.num_ws:
            delta = self.delta_reg(out.ws, stage=stage)
            terms["delta_reg"] = delta.detach()
            total = total + self.delta_reg_weight * delta
        if not torch.isfinite(total):
            self.nonfinite_steps += 1
            self.trainer.should_stop = True
            return None
        enc_opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        enc_opt.step()
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=n)
        self.log("train/progressive_stage", float(stage), batch_size=n)
        for name, value in terms.items():
            self.log(f"train/loss_{name}", value, batch_size=n)
        if self.image_every_n_steps and self.global_step % self.image_every_n_steps == 0:
            self.write_grid(x, out, f"train_{self.global_step:07d}")
        return None

    def configure_optimizers(self):
        enc = self.optimizer_factory([p for p in self.inverter.encoder.parameters() if p.requires_grad])
        d = torch.optim.Adam(self.discriminator.parameters(), lr=self.d_lr)
        return [enc, d]
