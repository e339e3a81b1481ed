"""The one reconstruction step: invert a batch with the encoder, then (optionally) refine its latents per image.

:func:`reconstruct` is what ``evaluate.py`` (every batch it scores) and ``python -m inversion.invert`` (every batch
of photos) run; :func:`refine_latents` is its refinement half, which collaborative training also calls on the ws
of its own (gradient-carrying) encoder pass. Refinement seeds:

* ``encoder`` -- start from the inverter's final ``ws`` (StyleGAN-Encoder: the encoder's guess, made exact);
* ``mean`` -- start from ``w_avg`` (Image2StyleGAN: optimization from scratch).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .inverter import InversionResult, Inverter
from .refine import RefineResult

__all__ = ["SEEDS", "Reconstruction", "device_sync", "reconstruct", "refine_latents"]

SEEDS = ("encoder", "mean")


def device_sync(device: torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work (CUDA / MPS), for honest wall times; no-op on CPU."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


@dataclass
class Reconstruction:
    """What :func:`reconstruct` computed for one batch."""

    encoder: InversionResult  # every ReStyle step (``.steps[t].ws / .images``); ``.ws`` / ``.images``: the last
    refined: dict[str, RefineResult] = field(default_factory=dict)  # per seed, in the order asked; {}: no refiner
    invert_seconds: float = 0.0  # wall time of the encoder pass (device synchronised)
    refine_seconds: dict[str, float] = field(default_factory=dict)  # per seed

    @property
    def final(self) -> RefineResult | InversionResult:
        """The first seed's refinement when there is one, else the encoder's result."""
        return next(iter(self.refined.values())) if self.refined else self.encoder

    @property
    def ws(self) -> torch.Tensor:
        """Final latents [N, num_ws, w_dim] (see :attr:`final`)."""
        return self.final.ws

    @property
    def images(self) -> torch.Tensor:
        """Final images [N, 3, R, R] at the generator's resolution (see :attr:`final`)."""
        return self.final.images


def refine_latents(
    refiner: Callable[..., RefineResult],  # inversion.refine.build_refiner(cfg) (or a Collaborative's refiner)
    generator: torch.nn.Module,  # the frozen generator the latents belong to
    target: torch.Tensor,  # [N, 3, S, S] in [-1, 1]: what the refiner fits
    ws: torch.Tensor | None = None,  # [N, num_ws, w_dim] the encoder's latents (the "encoder" seed; detached)
    *,
    seed: str = "encoder",  # one of SEEDS
    num_steps: int | None = None,  # None: the refiner's own setting (likewise for the keywords below)
    snapshot_steps: Sequence[int] | None = None,
    noise_mode: str | None = None,
    progress: bool | str | None = None,
) -> RefineResult:
    """Refine one batch from ``seed``, with gradients enabled whatever the caller's grad mode."""
    if seed not in SEEDS:
        raise ValueError(f"refine seed {seed!r}; choose from {list(SEEDS)}")
    if seed == "encoder" and ws is None:
        raise ValueError("refine seed 'encoder' needs the encoder's ws")
    overrides = {"num_steps": num_steps, "snapshot_steps": None if snapshot_steps is None else list(snapshot_steps),
                 "noise_mode": noise_mode, "progress": progress}
    init = ws.detach() if seed == "encoder" else None
    with torch.enable_grad():
        return refiner(generator, target, ws_init=init, **{k: v for k, v in overrides.items() if v is not None})


def reconstruct(
    inverter: Inverter,  # on its device and dtype
    x: torch.Tensor,  # [N, 3, S, S] in [-1, 1] at the encoder size (moved to the inverter's device and dtype)
    *,
    target: torch.Tensor | None = None,  # [N, 3, T, T] in [-1, 1]: what the refiner fits (needed with a refiner)
    refiner: Callable[..., RefineResult] | None = None,  # None: the encoder's result only
    seeds: Sequence[str] = ("encoder",),  # refinement starts, in order (SEEDS)
    num_iters: int | None = None,  # ReStyle steps (None: the inverter's)
    noise_mode: str = "const",  # generator noise, for the encoder's and the refiner's renders
    snapshot_steps: Sequence[int] | None = None,  # refiner: keep the latents after these many updates
    progress: bool | None = None,  # refiner's progress bar ("refine (<seed>)"); None: the refiner's own setting
) -> Reconstruction:
    """Invert ``x`` (no gradients), then refine the result from every seed when a refiner is given."""
    if refiner is not None and getattr(inverter, "content_box", None) is not None:
        raise ValueError(f"refinement renders the generator's whole frame, but this inverter's pictures are its "
                         f"content box {list(inverter.content_box)} (cars): refining a letterboxed generator is not "
                         "supported yet; use the encoder's result (refine=none)")
    device = inverter.latent_avg.device
    dtype = next(inverter.encoder.parameters()).dtype
    sync = device_sync(device)
    sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        encoded = inverter.invert(x.to(device=device, dtype=dtype), num_iters=num_iters, noise_mode=noise_mode)
    sync()
    result = Reconstruction(encoder=encoded, invert_seconds=time.perf_counter() - t0)
    if refiner is None:
        return result
    if target is None:
        raise ValueError("reconstruct: a refiner needs the target images (target=)")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"reconstruct: seeds={list(seeds)}; a non-empty list of distinct values from {list(SEEDS)}")
    target = target.to(device=device, dtype=torch.float32)
    for seed in seeds:
        sync()
        t0 = time.perf_counter()
        result.refined[seed] = refine_latents(
            refiner, inverter.generator, target, encoded.ws, seed=seed, snapshot_steps=snapshot_steps,
            noise_mode=noise_mode, progress=None if progress is None else (f"refine ({seed})" if progress else False))
        sync()
        result.refine_seconds[seed] = time.perf_counter() - t0
    return result
