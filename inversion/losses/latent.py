"""Latent-space losses: pSp's W-norm, e4e's delta regulariser, a latent L2 loss, and e4e's latent discriminator.

Shapes: ``ws`` [N, num_ws, w_dim]; single codes ``w`` [N, w_dim].

Formulas (official code):

* pSp ``criteria/w_norm.py``: ``torch.sum((ws - w_avg).norm(2, dim=(1, 2))) / N`` -- the Frobenius norm of
  each sample's offset from the average latent, averaged over the batch (no ``- w_avg`` when
  ``start_from_latent_avg=False``).
* e4e ``training/coach.py`` (``calc_loss``): with progressive training and ``stage != Inference``,
  ``sum_{i=1}^{stage} mean_n ||ws[n, i] - ws[n, 0]||_p`` (``delta_norm`` p = 2), weighted by
  ``delta_norm_lambda`` (2e-4) by the trainer.
* e4e adversarial loss on ``w``: ``LatentCodesDiscriminator(512, 4)`` (an MLP with keys ``mlp.{0,2,4,6}``),
  non-saturating losses ``softplus(-D(real)).mean() + softplus(D(fake)).mean()`` for D and
  ``mean_{i in dims} softplus(-D(ws[:, i])).mean()`` for the encoder (``w_discriminator_lambda``, 0.1 in the README),
  R1 ``r1 / 2 * mean_n ||dD(real_w)/d real_w||^2 * d_reg_every`` with ``r1 = 10`` every ``d_reg_every = 16``
  D steps, and a ``LatentCodesPool(w_pool_size=50)`` history buffer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import autograd, nn

__all__ = [
    "DeltaRegLoss",
    "LatentCodesDiscriminator",
    "LatentCodesPool",
    "LatentL2Loss",
    "WNormLoss",
    "discriminator_loss",
    "discriminator_loss_terms",
    "dims_to_discriminate",
    "fake_codes_for_discriminator",
    "generator_adv_loss",
    "r1_penalty",
]


def _check_ws(ws: torch.Tensor, name: str = "ws") -> None:
    if ws.ndim != 3:
        raise ValueError(f"{name}: expected [N, num_ws, w_dim], got {list(ws.shape)}")


class WNormLoss(nn.Module):
    """pSp's W-norm regulariser: ``mean_n ||ws[n] - w_avg||_F`` (``torch.sum(latent.norm(2, dim=(1, 2))) / N``)."""

    def __init__(
        self,
        start_from_latent_avg: bool = True,  # Penalise the offset from w_avg (pSp's flag); False: ||ws|| itself.
    ):
        super().__init__()
        self.start_from_latent_avg = start_from_latent_avg

    def forward(
        self,
        ws: torch.Tensor,  # [N, num_ws, w_dim]
        w_avg: torch.Tensor | None = None,  # [w_dim] or [num_ws, w_dim]; required if start_from_latent_avg.
        per_sample: bool = False,
    ) -> torch.Tensor:
        """Scalar (batch mean), or the per-sample norms [N] with ``per_sample=True``."""
        _check_ws(ws)
        if self.start_from_latent_avg:
            if w_avg is None:
                raise ValueError("WNormLoss(start_from_latent_avg=True) needs w_avg")
            ws = ws - w_avg
        norms = ws.norm(2, dim=(1, 2))
        return norms if per_sample else norms.sum() / ws.shape[0]


class DeltaRegLoss(nn.Module):
    """e4e's delta regulariser: ``sum_i mean_n ||ws[n, i] - ws[n, 0]||_p`` over the regularised layers ``i``.

    ``stage`` is e4e's ``progressive_stage.value`` (``inversion.encoders.Encoder4Editing.progressive_stage``,
    where ``num_ws`` stands for ``Inference``):

    * ``stage=None``: all deltas ``i = 1 .. num_ws - 1``;
    * ``0 <= stage < num_ws``: ``i = 1 .. stage``, e4e's ``range(1, progressive_stage.value + 1)``: every active
      delta, including the one introduced at this stage (stage 0 gives zero);
    * ``stage >= num_ws`` (``Inference``): zero, as e4e skips the term (``progressive_stage.value != 18`` for its
      18-layer generator). e4e's schedule never reaches it while training: its last stage is ``num_ws - 1``.

    e4e only adds this term (weight ``delta_norm_lambda`` = 2e-4) when progressive training is on.
    """

    def __init__(
        self,
        p: float = 2.0,  # Norm order (e4e's delta_norm, default 2).
    ):
        super().__init__()
        self.p = p

    def layers(self, num_ws: int, stage: int | None = None) -> list[int]:
        """Indices ``i`` of the penalised deltas ``ws[:, i] - ws[:, 0]``."""
        if stage is None:
            return list(range(1, num_ws))
        stage = int(getattr(stage, "value", stage))
        if stage < 0:
            raise ValueError(f"stage must be >= 0, got {stage}")
        if stage >= num_ws:
            return []
        return list(range(1, stage + 1))

    def forward(
        self,
        ws: torch.Tensor,  # [N, num_ws, w_dim]
        stage: int | None = None,  # e4e progressive stage (see class doc); None: all deltas.
        per_sample: bool = False,
    ) -> torch.Tensor:
        """Scalar (sum over deltas of the batch-mean norm), or [N] per-sample sums with ``per_sample=True``."""
        _check_ws(ws)
        idx = self.layers(ws.shape[1], stage)
        if not idx:
            total = ws.new_zeros(ws.shape[0]) + 0 * ws.sum()  # keeps the graph connected
        else:
            total = self._norms(ws, idx).sum(1)
        return total if per_sample else total.mean()

    def _norms(self, ws: torch.Tensor, idx: list[int]) -> torch.Tensor:
        return torch.linalg.vector_norm(ws[:, idx] - ws[:, :1], ord=self.p, dim=2)  # [N, len(idx)]

    def per_delta(self, ws: torch.Tensor, stage: int | None = None) -> dict[int, torch.Tensor]:
        """``{i: mean_n ||ws[n, i] - ws[n, 0]||_p}`` for each regularised delta ``i`` (e4e logs ``delta{i}_loss``);
        their sum is ``forward(ws, stage)``."""
        _check_ws(ws)
        idx = self.layers(ws.shape[1], stage)
        if not idx:
            return {}
        return dict(zip(idx, self._norms(ws, idx).mean(0).unbind(0)))


class LatentL2Loss(nn.Module):
    """MSE between predicted and known latents (e.g. for images generated from known ``ws``):
    ``F.mse_loss(ws_hat, ws)``; per sample the mean over layers and channels."""

    def forward(self, ws_hat: torch.Tensor, ws: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
        """Scalar (mean over all elements), or [N] with ``per_sample=True``."""
        if ws_hat.shape != ws.shape:
            raise ValueError(f"latents differ in shape: {list(ws_hat.shape)} vs {list(ws.shape)}")
        values = (ws_hat - ws).pow(2).flatten(1).mean(1)
        return values if per_sample else values.mean()


class LatentCodesDiscriminator(nn.Module):
    """e4e's latent-code discriminator (``models/discriminator.py``): ``num_layers - 1`` blocks of
    ``Linear(w_dim, w_dim)`` + ``LeakyReLU(0.2)`` and a final ``Linear(w_dim, 1)``; keys ``mlp.{0,2,4,6}.*``
    for the official ``LatentCodesDiscriminator(512, 4)``. Input [..., w_dim] -> logits [..., 1]."""

    def __init__(
        self,
        w_dim: int = 512,  # Latent size (official style_dim).
        num_layers: int = 4,  # Number of Linear layers (official n_mlp).
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.w_dim = w_dim
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers += [nn.Linear(w_dim, w_dim), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(w_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Logits [..., 1] for codes [..., w_dim]."""
        return self.mlp(w)


class LatentCodesPool:
    """e4e's history buffer of latent codes (``models/latent_codes_pool.py``, after CycleGAN's ImagePool).

    ``query(ws)`` takes codes [N, w_dim] -- or [N, L, w_dim], from which one random layer per sample is picked
    -- and returns N codes [N, w_dim]: while the pool has fewer than ``pool_size`` codes each one is stored
    and returned; afterwards, with probability 1/2 a random stored code is returned and replaced by the new
    one, else the new code is returned. ``pool_size=0`` returns the input unchanged. Stored codes are
    detached. Uses its own ``random.Random`` (seedable) instead of the global one.
    """

    def __init__(self, pool_size: int = 50, seed: int | None = None):
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = pool_size
        self.ws: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.ws)

    @property
    def num_ws(self) -> int:
        """Number of stored codes (official attribute name)."""
        return len(self.ws)

    @torch.no_grad()
    def query(self, ws: torch.Tensor) -> torch.Tensor:
        """Codes [N, w_dim] (or [N, L, w_dim]) -> codes [N, w_dim], mixing in stored ones."""
        if self.pool_size == 0:
            return ws
        out = []
        for w in ws:
            if w.ndim == 2:  # [L, w_dim]: a random layer as the candidate (official)
                w = w[self.rng.randint(0, len(w) - 1)]
            w = w.detach()
            if len(self.ws) < self.pool_size:
                self.ws.append(w)
                out.append(w)
            elif self.rng.uniform(0, 1) > 0.5:
                i = self.rng.randint(0, self.pool_size - 1)
                out.append(self.ws[i].clone())
                self.ws[i] = w
            else:
                out.append(w)
        return torch.stack(out, 0)


def dims_to_discriminate(num_ws: int, stage: int | None = None) -> list[int]:
    """Layers of ``ws`` the adversarial loss looks at: all of them without progressive training
    (``stage=None``), else e4e's ``get_deltas_starting_dimensions()[:stage + 1]`` = ``0 .. min(stage, num_ws - 1)``."""
    if stage is None:
        return list(range(num_ws))
    return list(range(num_ws))[: int(getattr(stage, "value", stage)) + 1]


def fake_codes_for_discriminator(
    ws: torch.Tensor,  # Encoder output [N, num_ws, w_dim] (computed without grad for the D step).
    dims: Sequence[int] | None = None,  # Layers to consider (dims_to_discriminate); None: all.
    pool: LatentCodesPool | None = None,  # e4e's fake pool (use_w_pool); None: no pool.
) -> torch.Tensor:
    """e4e's fake codes for a D step (``sample_real_and_fake_latents``): restrict to ``dims``, query the pool
    (one random layer per sample), and without a pool keep layer ``dims[0]`` only. Returns [N, w_dim]."""
    _check_ws(ws)
    if dims is not None:
        ws = ws[:, list(dims)]
    fake = pool.query(ws) if pool is not None else ws
    return fake[:, 0] if fake.ndim == 3 else fake


def discriminator_loss_terms(
    D: nn.Module, real_w: torch.Tensor, fake_w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """e4e's two D terms ``(softplus(-D(real)).mean(), softplus(D(fake)).mean())``; inputs are detached."""
    real_loss = F.softplus(-D(real_w.detach())).mean()
    fake_loss = F.softplus(D(fake_w.detach())).mean()
    return real_loss, fake_loss


def discriminator_loss(D: nn.Module, real_w: torch.Tensor, fake_w: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic D loss ``softplus(-D(real_w)).mean() + softplus(D(fake_w)).mean()`` (e4e).

    ``real_w``: codes from the mapping network [N, w_dim] (e4e: ``real_w_pool.query(G.get_latent(z))`` with
    ``use_w_pool``); ``fake_w``: encoder codes [N, w_dim] (see :func:`fake_codes_for_discriminator`).
    Both are detached: gradients go to D only.
    """
    real_loss, fake_loss = discriminator_loss_terms(D, real_w, fake_w)
    return real_loss + fake_loss


def generator_adv_loss(
    D: nn.Module,
    fake_w: torch.Tensor,  # Encoder codes [N, num_ws, w_dim] (or [N, w_dim]).
    dims: Sequence[int] | None = None,  # Layers to score (dims_to_discriminate); None: all layers.
    per_sample: bool = False,
) -> torch.Tensor:
    """e4e's encoder adversarial loss: ``mean_{i in dims} softplus(-D(fake_w[:, i])).mean()``.

    Gradients flow to ``fake_w`` (and into D's parameters only if they require grad: freeze D for the
    encoder step, as e4e does). ``per_sample=True`` gives [N] values whose mean is the scalar.
    """
    if fake_w.ndim == 2:
        fake_w = fake_w[:, None]
    _check_ws(fake_w, "fake_w")
    idx = list(range(fake_w.shape[1])) if dims is None else list(dims)
    if not idx:
        raise ValueError("dims must not be empty")
    values = F.softplus(-D(fake_w[:, idx])).squeeze(-1).mean(1)  # [N]
    return values if per_sample else values.mean()


def r1_penalty(
    D: nn.Module,
    real_w: torch.Tensor,  # Real codes [N, w_dim] (detached inside; a leaf with requires_grad is made).
    gamma: float = 10.0,  # e4e's --r1.
    reg_every: int = 16,  # e4e's --d_reg_every: lazy-regularisation scale; 1 gives the plain gamma/2 term.
) -> torch.Tensor:
    """R1 gradient penalty ``gamma / 2 * mean_n ||dD(w)/dw||^2 * reg_every`` (e4e's ``discriminator_r1_loss``
    and ``r1_final_loss``), differentiable w.r.t. D's parameters (``create_graph=True``).

    e4e applies it after the D step whenever ``global_step % d_reg_every == 0`` with ``reg_every=16``,
    ``gamma=10``; the training loop owns that schedule.
    """
    real_w = real_w.detach().requires_grad_(True)
    with torch.enable_grad():
        real_pred = D(real_w)
        (grad,) = autograd.grad(outputs=real_pred.sum(), inputs=real_w, create_graph=True)
    penalty = grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()
    return gamma / 2 * penalty * reg_every + 0 * real_pred.sum()
