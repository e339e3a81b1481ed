"""Pivotal tuning (PTI, Roich et al. 2021) as a batched, per-image refinement of the generator.

The generator passed in is never modified. Tuning learns, for every image ``i``, a delta of each parameter of
``G.synthesis`` that PTI trains (see ``docs/notes/pti.md``): the constant input ``input.input``, and in
``conv1``, ``convs.*``, ``to_rgb1`` and ``to_rgbs.*`` every ``conv.weight`` (modulated conv / toRGB kernels),
``conv.modulation.weight`` and ``conv.modulation.bias`` (the style affine layers A), ``activate.bias`` (conv
biases), ``noise.weight`` (noise strengths) and the toRGB ``bias``. The mapping network (``style.*``) and the
buffers (``noises.noise_*``, FIR kernels, ``w_avg``) get none. Image ``i`` is rendered with ``base + delta[i]``.

Batching: the B images are B independent problems in one run. The forward pass is
``torch.func.vmap(functional_call(G.synthesis, base + delta[i]))`` over the images, the per-image losses are
*summed* (not averaged) and Adam is element-wise, so image ``i``'s update depends only on image ``i``. An image
whose stopping loss is ``<= threshold`` (checked on the forward pass before the step, as PTI) gets no further
parameter or moment update (Adam moves parameters even with a zero gradient, so its slices are frozen) and is
left out of later forward passes; the images still running share one step count, so bias correction is exact.

``rank=None`` gives full deltas (exact PTI). ``rank=r`` gives low-rank deltas: every parameter with at least two
non-singleton dimensions is viewed as a matrix [shape[first non-singleton], rest] (a conv kernel [1, O, I, k, k]
as [O, I*k*k], the constant [1, C, 4, 4] as [C, 16]) and its delta is ``U_i @ V_i`` with U [., r] zero-initialised
(so step 0 renders the pivot exactly) and V [r, .] seeded N(0, 1/r); the other parameters get full deltas, and
so does a matrix whose smaller side is <= r (a factorisation would not save memory): with ``r`` at least every
matrix's smaller side, low-rank tuning *is* full tuning. :attr:`TuneResult.kinds` says per parameter which it got.

Locality regulariser (PTI's ``space_regularizer``, off by default as in the official config): at every step each
image draws ``num_samples`` codes z, maps them with ``truncation_psi`` (0.5) and moves its pivot a fixed L2 length
``alpha`` (30, measured over the whole [num_ws, w_dim] tensor) toward each; the tuned generator's render of that
code (``noise_mode='none'``) is pulled toward the frozen generator's by ``l2_weight * MSE + lpips_weight * LPIPS``
(0.1 each, the LPIPS of ``losses``), averaged over the samples. Codes come from one stream seeded by ``seed``.

Snapshots: ``snapshot_steps`` keeps the *images* after those many updates (a snapshot of the deltas would be one
generator per image and step); stopped images keep the images at which they stopped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..imageio import resize_images
from ..models.stylegan2 import Generator
from ..models.stylegan2_cond import require_unconditional

__all__ = ["LOCALITY_DEFAULTS", "TuneResult", "TuneSnapshot", "tune_generator", "tuned_parameter_names"]

_PREFIXES = ("input.", "conv1.", "to_rgb1.", "convs.", "to_rgbs.", "synthesis.")  # StyleGAN2; StyleGAN3
# PTI hyperparameters.py: regulizer_alpha, regulizer_l2_lambda, regulizer_lpips_lambda, latent_ball_num_of_samples,
# and the psi of the codes' mapping (localitly_regulizer.py).
LOCALITY_DEFAULTS = {"alpha": 30.0, "l2_weight": 0.1, "lpips_weight": 0.1, "truncation_psi": 0.5, "num_samples": 1}


def tuned_parameter_names(G: Generator) -> list[str]:
    """The parameters of ``G`` that get per-image deltas: every synthesis parameter (not the mapping: StyleGAN2's
    ``style.*``, StyleGAN3's ``mapping.*``)."""
    return [n for n, _ in G.named_parameters() if n.startswith(_PREFIXES)]


def _matrix_shape(shape: torch.Size, rank: int | None) -> tuple[int, int] | None:
    """[rows, cols] of a parameter that gets a rank-``rank`` delta: >= 2 non-singleton dims (first non-singleton dim
    x the rest) and a smaller side > rank. None: a full delta."""
    dims = [d for d in shape if d != 1]
    if rank is None or len(dims) < 2:
        return None
    rows, cols = dims[0], math.prod(dims[1:])
    return (rows, cols) if min(rows, cols) > rank else None


class _Synthesis(nn.Module):
    """``G.synthesis`` as a module forward (for ``functional_call``); parameter names are ``G``'s."""

    def __init__(self, G: Generator, noise_mode: str):
        super().__init__()
        self.G = G
        self.noise_mode = noise_mode

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode=self.noise_mode)


def _render(G: Generator, params: Mapping[str, torch.Tensor], ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
    """Images [B, 3, R, R]: image ``i`` from ``ws[i]`` with parameters ``params[name][i]`` (each [B, *shape])."""
    if noise_mode not in ("const", "none"):
        raise ValueError(f"noise_mode must be 'const' or 'none' (deterministic), got {noise_mode!r}")
    module = _Synthesis(G, noise_mode)
    names = list(params)

    def one(p: tuple[torch.Tensor, ...], w: torch.Tensor) -> torch.Tensor:
        return functional_call(module, {"G." + n: t for n, t in zip(names, p)}, (w[None],))[0]

    return vmap(one)(tuple(params[n] for n in names), ws)


@dataclass
class TuneSnapshot:
    """The images after ``step`` tuning updates (what :func:`tune_generator` with ``num_steps=step`` renders)."""

    step: int
    ws: torch.Tensor  # [B, num_ws, w_dim]: the pivots
    images: torch.Tensor  # [B, 3, R, R]

    def render(self, generator: Generator | None = None, noise_mode: str | None = None) -> torch.Tensor:
        """The stored images (same call as :meth:`RefineSnapshot.render`; rendered in the tuning's noise mode)."""
        return self.images


@dataclass
class TuneResult:
    """Outcome of :func:`tune_generator`.

    ``deltas`` (CPU, compact): ``{name: [B, *shape]}`` for full deltas; with ``rank`` a matrix parameter is stored
    as ``name + ".U"`` [B, rows, r] and ``name + ".V"`` [B, r, cols]. ``curves[name]`` is [len(logged_steps), B]
    for every loss (unweighted) and ``total``; entry ``k`` is measured before update ``logged_steps[k]`` and the
    last one on the returned deltas. A stopped image keeps the value at which it stopped.
    """

    ws: torch.Tensor  # [B, num_ws, w_dim]: the pivots
    deltas: dict[str, torch.Tensor]
    images: torch.Tensor | None  # [B, 3, R, R]: final renders (pivot, tuned parameters); None from load_tuned
    curves: dict[str, torch.Tensor] = field(default_factory=dict)
    steps_taken: torch.Tensor | None = None  # [B] long: updates applied to each image
    logged_steps: list[int] = field(default_factory=list)
    rank: int | None = None
    num_steps: int = 0  # the budget (an image that took fewer updates was stopped by the threshold)
    kinds: dict[str, str] = field(default_factory=dict)  # parameter -> "full" or "rank r"
    snapshots: list[TuneSnapshot] = field(default_factory=list)  # images at the requested steps
    noise: None = None  # (RefineResult's field: tuning optimises no noise maps)
    pivot_steps: int = 0  # latent-refinement steps that made the pivots (inversion.refine.Tuner's pivot)
    meta: dict[str, object] = field(default_factory=dict)  # what save_tuned stored beside (source, checkpoint)

    def per_image(self) -> list[dict[str, object]]:
        """Per image, what was tuned: updates applied, whether the threshold stopped it, the final value of every
        curve, and the size of its deltas (float32 bytes) by kind."""
        b = self.ws.shape[0]
        last = self.logged_steps[-1] if self.logged_steps else self.num_steps
        nbytes: dict[str, int] = {}
        for name, kind in self.kinds.items():
            keys = [name] if name in self.deltas else [name + ".U", name + ".V"]
            nbytes[kind] = nbytes.get(kind, 0) + sum(self.deltas[k][0].numel() * 4 for k in keys)
        out = []
        for i in range(b):
            steps = int(self.steps_taken[i]) if self.steps_taken is not None else last
            out.append({"steps_taken": steps, "stopped_early": steps < self.num_steps,
                        "final": {k: float(v[-1, i]) for k, v in self.curves.items()},
                        "deltas": {"parameters": dict(sorted(_count(self.kinds).items())), "bytes": nbytes}})
        return out

    def delta(self, name: str, index: slice | int | torch.Tensor = slice(None)) -> torch.Tensor:
        """The dense delta of parameter ``name`` for the selected images ([b, *shape]; an int keeps the dim)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        if name in self.deltas:
            return self.deltas[name][index]
        u, v = self.deltas[name + ".U"][index], self.deltas[name + ".V"][index]
        return u @ v

    def parameters_for(self, G: Generator, index: slice | int | torch.Tensor = slice(None)) -> dict[str, torch.Tensor]:
        """``{name: base + delta}`` [b, *shape] for the selected images, on ``G``'s device."""
        out = {}
        for name, p in G.named_parameters():
            if name.startswith(_PREFIXES):
                d = self.delta(name, index).to(p.device, p.dtype)
                out[name] = p.detach()[None] + d.reshape(d.shape[0], *p.shape)
        return out

    @torch.no_grad()
    def render(self, G: Generator, ws: torch.Tensor | None = None, noise_mode: str = "const",
               index: int | None = None, batch_size: int = 8) -> torch.Tensor:
        """Images [N, 3, R, R] of the tuned generators (``G`` must be the generator that was tuned):

        * ``index=None``: row ``i`` of ``ws`` (default: the pivots) through image ``i``'s tuned generator;
        * ``index=k``: every row of ``ws`` through image ``k``'s tuned generator, e.g. edits of its pivot."""
        ws = self.ws if ws is None else ws
        dev = G.w_avg.device
        out = []
        for start in range(0, ws.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            chunk = ws[rows].to(dev, torch.float32)
            if index is None:
                params = self.parameters_for(G, rows)
            else:
                params = {k: v.expand(chunk.shape[0], *v.shape[1:]) for k, v in self.parameters_for(G, index).items()}
            out.append(_render(G, params, chunk, noise_mode))
        return torch.cat(out)

    @torch.no_grad()
    def tuned_generator(self, G: Generator, index: int) -> Generator:
        """A copy of ``G`` with image ``index``'s deltas applied (e.g. to edit around that image)."""
        import copy

        out = copy.deepcopy(G)
        params = dict(out.named_parameters())
        for name, p in self.parameters_for(G, index).items():
            params[name].copy_(p[0])
        return out


def _count(kinds: Mapping[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind in kinds.values():
        out[kind] = out.get(kind, 0) + 1
    return out


def _build_losses(losses, lpips_weights):
    if losses is not None:
        losses = dict(losses)
        if not losses:
            raise ValueError("losses must not be empty")
        return losses
    from ..losses import LPIPSLoss, MSELoss

    if lpips_weights is None:
        raise ValueError("the PTI default losses (MSE 1 + LPIPS-alex 1) need lpips_weights (torchvision AlexNet "
                         "`features.*` file, paths.lpips_alex); or pass losses explicitly")
    return {"mse": (1.0, MSELoss()), "lpips": (1.0, LPIPSLoss.from_pretrained(lpips_weights, net="alex"))}


def _stop_key(losses, threshold_loss: str | None) -> str:
    if threshold_loss is not None:
        if threshold_loss not in set(losses) | {"total"}:
            raise ValueError(f"threshold_loss must be one of {sorted(set(losses) | {'total'})}, got {threshold_loss!r}")
        return threshold_loss
    from ..losses import LPIPSLoss

    for name, (_, module) in losses.items():
        if name == "lpips" or isinstance(module, LPIPSLoss):
            return name
    return "total"


def tune_generator(
    G: Generator,  # StyleGAN2; never modified (parameters, buffers and requires_grad flags unchanged).
    target: torch.Tensor,  # [B, 3, H, W] in [-1, 1]
    ws_pivot: torch.Tensor,  # [B, num_ws, w_dim]: the pivots (fixed)
    *,
    num_steps: int = 350,  # PTI max_pti_steps
    lr: float = 3e-4,  # PTI pti_learning_rate (Adam, betas 0.9/0.999, eps 1e-8)
    losses: Mapping[str, tuple[float, nn.Module]] | None = None,  # name -> (weight, module); None: MSE 1 + LPIPS 1.
    lpips_weights: str | None = None,  # AlexNet trunk file for the default LPIPS (losses=None).
    rank: int | None = None,  # None: full per-image deltas (exact PTI); r: low-rank deltas (module docstring).
    threshold: float | None = 0.06,  # Stop an image once its stopping loss <= threshold; None: never.
    threshold_loss: str | None = None,  # Stopping curve: None = the LPIPS term if present, else "total".
    loss_size: int | None = None,  # Compare at this size (None: the target's); PTI: full resolution.
    resize_mode: str = "adaptive_avg",
    noise_mode: str = "const",  # 'const' (PTI) or 'none'.
    locality: Mapping[str, float] | None = None,  # None: off (PTI default); {} or keys of LOCALITY_DEFAULTS: on.
    snapshot_steps: Sequence[int] | None = None,  # keep the images after these many updates (TuneSnapshot)
    seed: int = 0,  # Seeds the V factors of low-rank deltas and the locality codes.
    progress: bool | str = False,
) -> TuneResult:
    """Tune per-image deltas of the synthesis parameters around the fixed pivots (see the module docstring)."""
    if target.ndim != 4 or target.shape[1] != 3:
        raise ValueError(f"target must be [B, 3, H, W], got {tuple(target.shape)}")
    b = target.shape[0]
    if ws_pivot.shape != (b, G.num_ws, G.w_dim):
        raise ValueError(f"ws_pivot must be [{b}, {G.num_ws}, {G.w_dim}], got {tuple(ws_pivot.shape)}")
    if rank is not None and rank < 1:
        raise ValueError(f"rank must be >= 1 or None, got {rank}")
    device = target.device
    losses = _build_losses(losses, lpips_weights)
    stop_key = _stop_key(losses, threshold_loss)
    loc = _locality(locality, losses)
    if loc is not None:
        require_unconditional(G, "PTI's locality regulariser", "tune without it (refine.locality.enabled=false)")
    size = loss_size or target.shape[-1]
    target_small = resize_images(target.detach().float(), size, resize_mode)
    ws = ws_pivot.detach().to(device, torch.float32)

    base = {n: p.detach() for n, p in G.named_parameters() if n.startswith(_PREFIXES)}
    if not base:
        raise ValueError(f"pivotal tuning needs a StyleGAN2 or StyleGAN3 generator (inversion.models); "
                         f"{type(G).__name__} has none of their synthesis parameters")
    gen = torch.Generator().manual_seed(seed)
    train: dict[str, torch.Tensor] = {}  # the optimised tensors, [B, ...]
    kinds: dict[str, str] = {}
    for name, p in base.items():
        mat = _matrix_shape(p.shape, rank)
        if mat is None:
            train[name] = torch.zeros(b, *p.shape, device=device)
            kinds[name] = "full"
        else:
            train[name + ".U"] = torch.zeros(b, mat[0], rank, device=device)
            train[name + ".V"] = (torch.randn(b, rank, mat[1], generator=gen) / math.sqrt(rank)).to(device)
            kinds[name] = f"rank {rank}"
    for t in train.values():
        t.requires_grad_(True)

    def params(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, p in base.items():
            if name in train:
                d = train[name][idx]
            else:
                d = (train[name + ".U"][idx] @ train[name + ".V"][idx]).reshape(len(idx), *p.shape)
            out[name] = p[None] + d
        return out

    def locality_term(idx: torch.Tensor, current: dict[str, torch.Tensor]) -> torch.Tensor:
        """[len(idx)]: PTI's locality regulariser (module docstring); codes drawn for all B images every call."""
        n = int(loc["num_samples"])
        z = torch.randn(b, n, G.z_dim, generator=gen).to(device)[idx].flatten(0, 1)
        with torch.no_grad():
            w_z = G.mapping(z, truncation_psi=loc["truncation_psi"])
            w_p = ws[idx].repeat_interleave(n, 0)
            step = w_z - w_p
            w_r = w_p + loc["alpha"] * step / step.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
            frozen = resize_images(G.synthesis(w_r, noise_mode="none").float(), size, resize_mode)
        p = current if n == 1 else {k: v.repeat_interleave(n, 0) for k, v in current.items()}
        tuned = resize_images(_render(G, p, w_r, "none").float(), size, resize_mode)
        term = loc["l2_weight"] * (tuned - frozen).square().flatten(1).mean(1)
        if loc["lpips_weight"]:
            term = term + loc["lpips_weight"] * loc["lpips"](tuned, frozen, per_sample=True).float()
        return term.view(len(idx), n).mean(1)

    def evaluate(idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        p = params(idx)
        images = _render(G, p, ws[idx], noise_mode)
        small = resize_images(images.float(), size, resize_mode)
        values, total = {}, torch.zeros(len(idx), device=device)
        for name, (weight, module) in losses.items():
            values[name] = module(small, target_small[idx], per_sample=True).float()
            total = total + weight * values[name]
        if loc is not None:
            values["locality"] = locality_term(idx, p)
            total = total + values["locality"]
        values["total"] = total
        return values, images

    state = {k: (torch.zeros_like(t), torch.zeros_like(t)) for k, t in train.items()}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    active = torch.ones(b, dtype=torch.bool, device=device)
    steps_taken = torch.full((b,), num_steps, dtype=torch.long)
    current: dict[str, torch.Tensor] = {}  # latest per-image values (stopped images keep theirs)
    log: dict[str, list[torch.Tensor]] = {}
    logged_steps: list[int] = []
    wanted = sorted({int(s) for s in snapshot_steps or () if 0 <= int(s) <= num_steps})
    snapshots: list[TuneSnapshot] = []
    latest: torch.Tensor | None = None  # the images of every image's current parameters (for snapshots)

    def record(step: int) -> None:
        logged_steps.append(step)
        for k, v in current.items():
            log.setdefault(k, []).append(v.detach().cpu().clone())

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc=progress if isinstance(progress, str) else "tune", leave=False)
    last = num_steps
    for step in range(num_steps):
        idx = active.nonzero().squeeze(1)
        values, images = evaluate(idx)
        for k, v in values.items():
            current.setdefault(k, torch.zeros(b, device=device))[idx] = v.detach()
        if wanted:
            if latest is None:
                latest = torch.zeros(b, *images.shape[1:], device=device, dtype=images.dtype)
            latest[idx] = images.detach()
            if step in wanted:
                snapshots.append(TuneSnapshot(step, ws.clone(), latest.clone()))
        if threshold is not None:
            newly = active & (current[stop_key] <= threshold)
            steps_taken[newly.cpu()] = step
            active &= ~newly
            if not bool(active.any()):
                last = step
                break
        record(step)
        keep = active[idx]  # the evaluated images that are still running
        grads = torch.autograd.grad(values["total"][keep].sum(), list(train.values()), allow_unused=True)
        k = step + 1  # every running image has taken exactly `step` updates before this one
        with torch.no_grad():
            for (name, t), g in zip(train.items(), grads):
                if g is None:
                    continue
                m, v = state[name]
                mask = active.view(-1, *[1] * (t.ndim - 1))
                m_new = m.lerp(g, 1 - beta1)
                v_new = v.mul(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (v_new.sqrt() / math.sqrt(1 - beta2**k)).add_(eps)
                t_new = t.addcdiv(m_new, denom, value=-lr / (1 - beta1**k))
                m.copy_(torch.where(mask, m_new, m))
                v.copy_(torch.where(mask, v_new, v))
                t.copy_(torch.where(mask, t_new, t))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=float(current["total"].mean()), active=int(active.sum()))
    if bar is not None:
        bar.close()

    with torch.no_grad():
        values, images = evaluate(torch.arange(b, device=device))
        current = {k: v.detach() for k, v in values.items()}
    record(last)
    done = {s.step for s in snapshots}
    snapshots += [TuneSnapshot(s, ws.clone(), images.detach().clone()) for s in wanted if s not in done]
    return TuneResult(
        ws=ws.clone(),
        deltas={k: t.detach().cpu().clone() for k, t in train.items()},
        images=images.detach(),
        curves={k: torch.stack(v) for k, v in log.items()},
        steps_taken=steps_taken,
        logged_steps=logged_steps,
        rank=rank,
        num_steps=num_steps,
        kinds=kinds,
        snapshots=snapshots,
    )


def _locality(locality: Mapping[str, float] | None, losses) -> dict | None:
    """The locality settings (LOCALITY_DEFAULTS overridden by ``locality``) with the LPIPS module, or None (off)."""
    if locality is None:
        return None
    unknown = set(locality) - set(LOCALITY_DEFAULTS)
    if unknown:
        raise ValueError(f"locality: unknown keys {sorted(unknown)}; allowed: {sorted(LOCALITY_DEFAULTS)}")
    out: dict = {**LOCALITY_DEFAULTS, **{k: float(v) for k, v in locality.items()}}
    if out["num_samples"] < 1 or out["num_samples"] != int(out["num_samples"]):
        raise ValueError(f"locality.num_samples must be a positive integer, got {out['num_samples']}")
    out["lpips"] = None
    if out["lpips_weight"]:
        from ..losses import LPIPSLoss

        found = [m for n, (_, m) in losses.items() if n == "lpips" or isinstance(m, LPIPSLoss)]
        if not found:
            raise ValueError("locality.lpips_weight > 0 needs an LPIPS term in losses (PTI: LPIPS-alex); "
                             "or set locality.lpips_weight=0")
        out["lpips"] = found[0]
    return out
