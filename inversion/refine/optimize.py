"""Per-image latent (and noise) optimization, batched: Image2StyleGAN / Karras projector / Image2StyleGAN++.

Every image of a batch is an independent problem. The per-image losses (``per_sample=True``) are *summed*
over the batch, never averaged, and Adam's update is element-wise, so image ``i``'s step depends only on
image ``i``: refining a batch gives the same per-image result as refining each image alone (up to float
round-off). Images whose stopping loss falls below ``threshold`` are frozen (their latents and noise are
restored after every later optimizer step) and their ``steps_taken`` is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..imageio import resize_images
from ..models.stylegan2 import Generator
from ..models.stylegan2_cond import require_unconditional

__all__ = ["SPACES", "RefineResult", "RefineSnapshot", "karras_lr", "noise_regularization", "refine"]

SPACES = ("w", "w+", "w+noise")


@dataclass
class RefineResult:
    """Outcome of :func:`refine`.

    ``curves[name]`` is [num_logged, N]: the per-image value of every loss (unweighted), ``noise_reg``
    (when noise is optimized), ``recon`` (weighted sum of the image losses) and ``total`` (what is
    minimised: ``recon + noise_regularize * noise_reg``) at the steps listed in ``logged_steps``.
    Entry ``k`` is measured *before* update ``logged_steps[k]``; the last entry (step ``num_steps`` or the
    early-stop step) is measured on the returned latents.
    """

    ws: torch.Tensor  # [N, num_ws, w_dim] (broadcast for the "w" space)
    images: torch.Tensor  # [N, 3, R, R] at generator resolution, from the returned ws / noise
    noise: list[torch.Tensor] | None  # per-layer [N, 1, r, r] when noise was optimized, else None
    curves: dict[str, torch.Tensor] = field(default_factory=dict)
    steps_taken: torch.Tensor | None = None  # [N] long: updates applied to each image
    logged_steps: list[int] = field(default_factory=list)
    snapshots: list[RefineSnapshot] = field(default_factory=list)  # the latents at the requested steps


@dataclass
class RefineSnapshot:
    """The latents (and optimized noise) after ``step`` updates: what :func:`refine` would have returned with
    ``num_steps=step`` (frozen images keep their frozen values). Render with :meth:`render`."""

    step: int
    ws: torch.Tensor  # [N, num_ws, w_dim]
    noise: list[torch.Tensor] | None

    def render(self, generator: Generator, noise_mode: str = "const") -> torch.Tensor:
        """The snapshot's images [N, 3, R, R] (``noise_mode`` applies when noise was not optimized)."""
        return generator.synthesis(self.ws, noise_mode=noise_mode, noise=self.noise)


def karras_lr(step: int, num_steps: int, lr: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """The Karras projector schedule: linear ramp-up over ``rampup`` and cosine ramp-down over ``rampdown``
    (fractions of ``num_steps``); a fraction of 0 switches that ramp off (constant lr = Image2StyleGAN)."""
    t = step / max(num_steps, 1)
    ramp = 1.0
    if rampdown > 0:
        ramp = min(1.0, (1.0 - t) / rampdown)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp = ramp * min(1.0, t / rampup)
    return lr * ramp


def noise_regularization(noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """Karras et al. (2020) multi-scale noise regulariser, per image: for every map [N, 1, r, r] and its
    2x average-pooled pyramid down to 8x8, the squared mean autocorrelation at a one-pixel shift in x and y.
    Returns [N]."""
    reg = None
    for n in noise:
        x = n
        while True:
            term = (x * torch.roll(x, shifts=1, dims=3)).mean(dim=(1, 2, 3)).square()
            term = term + (x * torch.roll(x, shifts=1, dims=2)).mean(dim=(1, 2, 3)).square()
            reg = term if reg is None else reg + term
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, kernel_size=2)
    assert reg is not None
    return reg


def _init_ws(generator: Generator, ws_init: torch.Tensor | None, n: int, space: str, device) -> torch.Tensor:
    if ws_init is None:
        w = generator.w_avg.detach().to(device=device, dtype=torch.float32)
        w = w.view(1, 1, -1).expand(n, generator.num_ws, -1)
    else:
        w = ws_init.detach().to(device=device, dtype=torch.float32)
        if w.ndim == 1:
            w = w.view(1, 1, -1).expand(n, generator.num_ws, -1)
        elif w.ndim == 2:
            w = w.unsqueeze(1).expand(-1, generator.num_ws, -1)
        if w.shape != (n, generator.num_ws, generator.w_dim):
            raise ValueError(f"ws_init must broadcast to [{n}, {generator.num_ws}, {generator.w_dim}], got "
                             f"{tuple(ws_init.shape)}")
    if space == "w":
        return w.mean(dim=1).clone()  # [N, w_dim]
    return w.clone()


def refine(
    generator: Generator,  # StyleGAN2; frozen during the call (requires_grad restored afterwards).
    target: torch.Tensor,  # [N, 3, H, W] in [-1, 1]
    *,
    ws_init: torch.Tensor | None = None,  # [N, num_ws, w_dim] / [N, w_dim] / [w_dim]; None: w_avg.
    space: str = "w+",  # "w" (one w per image), "w+" (per-layer ws) or "w+noise" (also per-image noise).
    optimize_noise: bool | None = None,  # Optimize noise maps (None: only for "w+noise"); the projector: W+noise.
    noise_init: str = "const",  # Initial noise maps: "const" (generator buffers) or "random" (seeded N(0,1)).
    noise_mode: str = "const",  # Generator noise when noise is not optimized: "const" / "random" / "none".
    num_steps: int = 100,
    lr: float = 0.01,
    losses: Mapping[str, tuple[float, nn.Module]] | None = None,  # name -> (weight, module); None: MSE 1.
    threshold: float | None = None,  # Freeze an image once its stopping loss is below this.
    threshold_loss: str | None = None,  # Curve used for stopping (a loss name, "recon" or "total"); None: recon.
    noise_regularize: float = 1e5,  # Weight of the Karras noise regulariser (only with optimized noise).
    lr_rampup: float = 0.05,
    lr_rampdown: float = 0.25,
    noise_ramp: float = 0.75,  # Fraction of the steps over which the latent-noise scale decays to 0.
    initial_noise_factor: float = 0.0,  # Karras latent noise: w_std * factor * (1 - t / noise_ramp)^2; 0 = off.
    w_std: float | None = None,  # Spread of W for the latent noise; None: estimated from 10,000 seeded z.
    loss_size: int | None = None,  # Compare images at this size (default: the target's).
    resize_mode: str = "adaptive_avg",
    log_every: int = 1,
    snapshot_steps: Sequence[int] = (),  # Keep the latents after these many updates (RefineResult.snapshots).
    seed: int = 0,  # Seeds the "random" noise init and the latent noise.
    progress: bool | str = False,  # tqdm bar (a string is its description).
) -> RefineResult:
    """Optimize the latents (and optionally noise) of every image of ``target`` independently, in parallel.

    Returns a :class:`RefineResult`. See the module docstring for the batching and stopping rules.
    """
    flags = [(p, p.requires_grad) for p in generator.parameters()]
    generator.requires_grad_(False)
    try:
        return _refine(
            generator, target, ws_init=ws_init, space=space, optimize_noise=optimize_noise, noise_init=noise_init,
            noise_mode=noise_mode, num_steps=num_steps, lr=lr, losses=losses, threshold=threshold,
            threshold_loss=threshold_loss, noise_regularize=noise_regularize, lr_rampup=lr_rampup,
            lr_rampdown=lr_rampdown, noise_ramp=noise_ramp, initial_noise_factor=initial_noise_factor, w_std=w_std,
            loss_size=loss_size, resize_mode=resize_mode, log_every=log_every, snapshot_steps=snapshot_steps,
            seed=seed, progress=progress,
        )
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _refine(
    generator: Generator,
    target: torch.Tensor,
    *,
    ws_init: torch.Tensor | None,
    space: str,
    optimize_noise: bool | None,
    noise_init: str,
    noise_mode: str,
    num_steps: int,
    lr: float,
    losses: Mapping[str, tuple[float, nn.Module]] | None,
    threshold: float | None,
    threshold_loss: str | None,
    noise_regularize: float,
    lr_rampup: float,
    lr_rampdown: float,
    noise_ramp: float,
    initial_noise_factor: float,
    w_std: float | None,
    loss_size: int | None,
    resize_mode: str,
    log_every: int,
    snapshot_steps: Sequence[int],
    seed: int,
    progress: bool | str,
) -> RefineResult:
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if target.ndim != 4 or target.shape[1] != 3:
        raise ValueError(f"target must be [N, 3, H, W], got {tuple(target.shape)}")
    if log_every < 1:
        raise ValueError("log_every must be >= 1")
    snap_at = sorted({int(s) for s in snapshot_steps})
    if snap_at and not 0 <= snap_at[0] <= snap_at[-1] <= num_steps:
        raise ValueError(f"snapshot_steps must lie in [0, num_steps={num_steps}], got {list(snapshot_steps)}")
    device = target.device
    n = target.shape[0]
    with_noise = (space == "w+noise") if optimize_noise is None else bool(optimize_noise)
    if with_noise and not hasattr(generator, "noise_shapes"):
        raise ValueError(f"{type(generator).__name__} has no noise inputs (StyleGAN3): refine in space 'w' or 'w+' "
                         "with optimize_noise=false (refine=image2stylegan, or refine.optimize_noise=false)")
    losses = dict(losses) if losses is not None else {"mse": (1.0, _default_mse())}
    if not losses:
        raise ValueError("losses must not be empty")
    if threshold is not None:
        valid = set(losses) | {"recon", "total"} | ({"noise_reg"} if with_noise else set())
        if threshold_loss is not None and threshold_loss not in valid:
            raise ValueError(f"threshold_loss must be one of {sorted(valid)}, got {threshold_loss!r}")
    stop_key = threshold_loss or "recon"
    size = loss_size or target.shape[-1]
    target_small = resize_images(target.detach().float(), size, resize_mode)
    gen = torch.Generator().manual_seed(seed)

    w_opt = _init_ws(generator, ws_init, n, space, device).requires_grad_(True)
    params: list[torch.Tensor] = [w_opt]
    noise: list[torch.Tensor] | None = None
    if with_noise:
        if noise_init == "const":
            noise = [b.detach().to(device, torch.float32).expand(n, -1, -1, -1).clone()
                     for b in generator.const_noise()]
        elif noise_init == "random":
            noise = [torch.randn(n, *s[1:], generator=gen).to(device) for s in generator.noise_shapes()]
        else:
            raise ValueError(f"noise_init must be 'const' or 'random', got {noise_init!r}")
        for b in noise:
            b.requires_grad_(True)
        params += noise
    noise_scale_std = 0.0
    if initial_noise_factor > 0:
        if w_std is None:
            require_unconditional(generator, "the projector's w_std estimate (initial_noise_factor > 0)",
                                  "pass w_std=..., or set refine.initial_noise_factor=0")
            with torch.no_grad():
                z = torch.randn(10_000, generator.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
                w = torch.cat([generator.mapping(zc)[:, 0] for zc in z.split(1000)]).float()  # SG2 and SG3
                w_std = float(((w - w.mean(0)).square().sum() / w.shape[0]).sqrt())
        noise_scale_std = w_std * initial_noise_factor
    optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=lr)

    active = torch.ones(n, dtype=torch.bool, device=device)
    steps_taken = torch.full((n,), num_steps, dtype=torch.long, device=device)
    log: dict[str, list[torch.Tensor]] = {}
    logged_steps: list[int] = []

    def evaluate(step: int, grad: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        w = w_opt
        if grad and noise_scale_std > 0:
            t = step / max(num_steps, 1)
            scale = noise_scale_std * max(0.0, 1.0 - t / noise_ramp) ** 2
            w = w + torch.randn(w.shape, generator=gen).to(device) * scale
        ws = w.unsqueeze(1).expand(-1, generator.num_ws, -1) if space == "w" else w
        images = generator.synthesis(ws, noise_mode=noise_mode, noise=noise)
        small = resize_images(images.float(), size, resize_mode)
        values: dict[str, torch.Tensor] = {}
        recon = torch.zeros(n, device=device)
        for name, (weight, module) in losses.items():
            v = module(small, target_small, per_sample=True).float()
            values[name] = v
            recon = recon + weight * v
        values["recon"] = recon
        total = recon
        if noise is not None:
            values["noise_reg"] = noise_regularization(noise)
            total = total + noise_regularize * values["noise_reg"]
        values["total"] = total
        return total, values, images

    snapshots: list[RefineSnapshot] = []

    def snapshot(step: int) -> None:
        ws = w_opt.detach()
        ws = ws.unsqueeze(1).expand(-1, generator.num_ws, -1).clone() if space == "w" else ws.clone()
        snapshots.append(RefineSnapshot(step=step, ws=ws,
                                        noise=None if noise is None else [b.detach().clone() for b in noise]))

    def record(step: int, values: dict[str, torch.Tensor]) -> None:
        logged_steps.append(step)
        for k, v in values.items():
            log.setdefault(k, []).append(v.detach().cpu())

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc=progress if isinstance(progress, str) else "refine", leave=False)
    last = num_steps
    for step in range(num_steps):
        if len(snapshots) < len(snap_at) and snap_at[len(snapshots)] == step:
            snapshot(step)
        total, values, _ = evaluate(step, grad=True)
        if threshold is not None:
            newly = active & (values[stop_key].detach() < threshold)
            steps_taken[newly] = step
            active &= ~newly
            if not bool(active.any()):
                last = step
                break
        if step % log_every == 0:
            record(step, values)
        for g in optimizer.param_groups:
            g["lr"] = karras_lr(step, num_steps, lr, lr_rampup, lr_rampdown)
        frozen = [p.detach().clone() for p in params] if not bool(active.all()) else None
        optimizer.zero_grad(set_to_none=True)
        total.sum().backward()  # summed over images: each image's gradient is its own
        optimizer.step()
        with torch.no_grad():
            if noise is not None:
                for b in noise:  # renormalise each image's map to zero mean, unit variance
                    b -= b.mean(dim=(1, 2, 3), keepdim=True)
                    b *= b.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
            if frozen is not None:
                for p, old in zip(params, frozen):
                    p.copy_(torch.where(active.view(-1, *[1] * (p.ndim - 1)), p, old))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=float(values["recon"].mean()), active=int(active.sum()))
    if bar is not None:
        bar.close()

    with torch.no_grad():
        _, values, images = evaluate(last, grad=False)
        if threshold is not None:
            newly = active & (values[stop_key] < threshold)
            steps_taken[newly] = last
    if not logged_steps or logged_steps[-1] != last:
        record(last, values)
    while len(snapshots) < len(snap_at):  # the final latents (also after an early stop: nothing moves any more)
        snapshot(snap_at[len(snapshots)])
    ws = w_opt.detach()
    ws = ws.unsqueeze(1).expand(-1, generator.num_ws, -1).clone() if space == "w" else ws.clone()
    return RefineResult(
        ws=ws,
        images=images.detach(),
        noise=[b.detach().clone() for b in noise] if noise is not None else None,
        curves={k: torch.stack(v) for k, v in log.items()},
        steps_taken=steps_taken.cpu(),
        logged_steps=logged_steps,
        snapshots=snapshots,
    )


def _default_mse() -> nn.Module:
    from ..losses import MSELoss

    return MSELoss()
