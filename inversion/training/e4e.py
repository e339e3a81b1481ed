"""e4e training: latent discriminator, progressive delta schedule and delta regularisation, as phases of the one
training step of :class:`~inversion.training.InversionModule`.

Follows e4e's coach (``encoder4editing/training/coach.py``) and ReStyle-e4e's (``coach_restyle_e4e.py``):

* discriminator phase, every step before the encoder's: one encoder pass without gradient (train mode, so
  BatchNorm statistics move as in the official step) gives the fake codes -- e4e: ``encoder(x) + latent_avg``;
  ReStyle-e4e: the raw first-iteration output ``encoder(cat(x, avg_image))``, without ``latent_avg`` -- restricted to
  the active layers and passed through the fake pool; real codes are ``mapping(z)`` through the real pool; D takes a
  non-saturating logistic step (Adam, ``d_lr``), then every ``d_reg_every`` steps an R1 step on the *same* pooled real
  codes;
* encoder phase: the configured image terms plus ``adv_weight`` * the non-saturating adversarial term over the active
  layers and ``delta_reg_weight`` * the delta regulariser, at every ReStyle iteration (the official ``calc_loss`` runs
  per iteration);
* progressive schedule: stage 0 (the base ``w`` only) until ``progressive_start``, then one more delta every
  ``progressive_step_every`` steps up to stage ``num_ws - 1`` (e4e's ``progressive_steps`` list has ``num_ws``
  entries), so the delta regulariser stays on until the end of training.
"""

from __future__ import annotations

from typing import Any

import torch

from ..inverter import InversionStep
from ..losses import (
    DeltaRegLoss,
    LatentCodesDiscriminator,
    LatentCodesPool,
    dims_to_discriminate,
    discriminator_loss_terms,
    fake_codes_for_discriminator,
    generator_adv_loss,
    r1_penalty,
)
from ..models.stylegan2_cond import require_unconditional
from .module import InversionModule, step_noise_seed

D_FAKE_CODES = ("official", "final_ws")


class E4EModule(InversionModule):
    """:class:`InversionModule` with e4e's latent discriminator and progressive training."""

    def __init__(
        self,
        *,
        adv_weight: float = 0.1,  # e4e --w_discriminator_lambda.
        d_lr: float = 2e-5,  # e4e --w_discriminator_lr (Adam).
        r1_gamma: float = 10.0,  # e4e --r1.
        d_reg_every: int = 16,  # e4e --d_reg_every.
        pool_size: int = 50,  # e4e --w_pool_size (fake and real pools; --use_w_pool).
        delta_reg_weight: float = 2e-4,  # e4e --delta_norm_lambda (only with progressive training, as e4e).
        delta_norm: float = 2.0,  # e4e --delta_norm.
        progressive_start: int | None = 20000,  # e4e --progressive_start; None: all deltas from the start.
        progressive_step_every: int = 2000,  # e4e --progressive_step_every.
        d_num_layers: int = 4,  # latent D depth.
        d_fake_codes: str = "official",  # D's fake codes: 'official' (first iteration's encoder output, ReStyle-e4e
        # without latent_avg) or 'final_ws' (the final ws after every ReStyle iteration, with latent_avg).
        adv_every_iteration: bool = True,  # ReStyle: adversarial + delta terms at every iteration (official), or
        # False: at the final iteration only.
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if d_fake_codes not in D_FAKE_CODES:
            raise ValueError(f"d_fake_codes must be one of {D_FAKE_CODES}, got {d_fake_codes!r}")
        inv = self.inverter
        if adv_weight > 0:
            require_unconditional(inv.generator, "e4e's latent discriminator (its real codes)",
                                  "set module.adv_weight=0 to train without it")
        self.discriminator = LatentCodesDiscriminator(w_dim=inv.generator.w_dim, num_layers=d_num_layers)
        self.discriminator.requires_grad_(False)  # on only during its own phase
        self.adv_weight, self.d_lr = adv_weight, d_lr
        self.r1_gamma, self.d_reg_every = r1_gamma, d_reg_every
        self.fake_pool, self.real_pool = LatentCodesPool(pool_size, seed=0), LatentCodesPool(pool_size, seed=1)
        self.delta_reg = DeltaRegLoss(p=delta_norm)
        self.delta_reg_weight = delta_reg_weight
        self.progressive_start, self.progressive_step_every = progressive_start, progressive_step_every
        self.d_fake_codes, self.adv_every_iteration = d_fake_codes, adv_every_iteration
        self.z_generator = torch.Generator().manual_seed(2)  # real codes; its state is checkpointed

    # ------------------------------------------------------------------ progressive schedule
    def stage_at(self, step: int) -> int:
        """Number of active deltas at ``step``: e4e's ``progressive_steps = [0, start, start + every, ...]`` with
        ``num_ws`` entries, so the last stage is ``num_ws - 1`` (every delta active, still regularised); without
        progressive training ``num_ws`` (e4e's ``Inference``)."""
        num_ws = self.inverter.num_ws
        if self.progressive_start is None:
            return num_ws
        if step < self.progressive_start:
            return 0
        return min(num_ws - 1, 1 + (step - self.progressive_start) // self.progressive_step_every)

    def _set_stage(self, step: int) -> int:
        stage = self.stage_at(step)
        self.inverter.encoder.progressive_stage = stage
        return stage

    @property
    def stage(self) -> int:
        return int(self.inverter.encoder.progressive_stage)

    def on_fit_start(self) -> None:  # also after a resume: the stage follows from the step
        self._set_stage(self.global_step)

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

    # ------------------------------------------------------------------ discriminator phase
    @torch.no_grad()
    def _real_codes(self, n: int, generator: torch.Generator) -> torch.Tensor:
        G = self.inverter.generator
        z = torch.randn(n, G.z_dim, generator=generator, dtype=G.w_avg.dtype)  # the mapping network's dtype
        if hasattr(G, "style"):  # StyleGAN2: decoder.get_latent(z) [N, w_dim]
            return G.style(z.to(self.device))
        return G.mapping(z.to(self.device))  # StyleGAN3 (stylegan3-editing): [N, num_ws, w_dim]; the pool picks a layer

    @torch.no_grad()
    def _fake_source(self, x: torch.Tensor) -> torch.Tensor:
        """Codes [N, num_ws, w_dim] D's fake codes are taken from (see ``d_fake_codes``)."""
        if self.d_fake_codes == "final_ws":
            return self.inverter.invert(x, render=False).ws
        first = next(iter(self.inverter.iterate(x, num_iters=1, render=False)))  # one encoder pass
        return first.delta if self.inverter.residual else first.ws

    def before_encoder_phase(self, batch: dict, stage: str, index: int) -> dict[str, torch.Tensor]:
        """Sets the progressive stage; training: D's step (+ lazy R1); validation: D's losses on the batch."""
        logs = {}
        if stage == "train":
            logs["progressive_stage"] = torch.tensor(float(self._set_stage(index)))
        if self.adv_weight <= 0:
            return logs
        x = batch["image"]
        n = x.shape[0]
        dims = dims_to_discriminate(self.inverter.num_ws, self.stage)
        if stage == "val":  # the pools and the training RNG stay untouched: validation never changes training
            gen = torch.Generator().manual_seed(step_noise_seed(self.noise_seed, "val", index))
            real, fake = self._real_codes(n, gen), self._fake_source(x)[:, dims[0]]
            real_loss, fake_loss = discriminator_loss_terms(self.discriminator, real, fake)
            return {**logs, "d_real_loss": real_loss, "d_fake_loss": fake_loss,
                    "discriminator_loss": real_loss + fake_loss}
        d_opt = self.optimizers()[1].optimizer  # the raw optimizer: global_step counts the encoder's batches
        fake = fake_codes_for_discriminator(self._fake_source(x), dims, self.fake_pool)
        real = self.real_pool.query(self._real_codes(n, self.z_generator))
        self.discriminator.requires_grad_(True)
        with torch.enable_grad():
            real_loss, fake_loss = discriminator_loss_terms(self.discriminator, real, fake)
            d_loss = real_loss + fake_loss
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            d_opt.step()
            logs.update(d_real_loss=real_loss.detach(), d_fake_loss=fake_loss.detach(),
                        discriminator_loss=d_loss.detach())
            if index % self.d_reg_every == 0:  # R1 on the same pooled real codes (official)
                r1 = r1_penalty(self.discriminator, real, self.r1_gamma, self.d_reg_every)
                d_opt.zero_grad(set_to_none=True)
                self.manual_backward(r1)
                d_opt.step()
                logs["discriminator_r1_loss"] = r1.detach()
        self.discriminator.requires_grad_(False)
        return logs

    # ------------------------------------------------------------------ encoder phase
    def extra_losses(self, step: InversionStep, t: int, last: bool, terms: dict[str, torch.Tensor]
                     ) -> torch.Tensor | None:
        """The adversarial term over the active layers and the delta regulariser (progressive training, stages
        below ``num_ws``), each delta's norm logged as ``delta{i}_loss``; every iteration, or the last only."""
        if not (self.adv_every_iteration or last):
            return None
        total = None
        if self.adv_weight > 0:
            adv = generator_adv_loss(self.discriminator, step.ws, dims_to_discriminate(self.inverter.num_ws,
                                                                                        self.stage))
            terms["encoder_discriminator_loss"] = adv.detach()
            total = self.adv_weight * adv
        if self.delta_reg_weight > 0 and self.progressive_start is not None and self.stage < self.inverter.num_ws:
            per = self.delta_reg.per_delta(step.ws, self.stage)
            delta = sum(per.values()) if per else step.ws.new_zeros(())
            for i, v in per.items():
                terms[f"delta{i}_loss"] = v.detach()
            terms["total_delta_loss"] = delta.detach()
            total = self.delta_reg_weight * delta if total is None else total + self.delta_reg_weight * delta
        return total

    def configure_optimizers(self):
        enc = self.optimizer_factory([p for p in self.inverter.encoder.parameters() if p.requires_grad])
        d = torch.optim.Adam(self.discriminator.parameters(), lr=self.d_lr)
        return [enc, d]
