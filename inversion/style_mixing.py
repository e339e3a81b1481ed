"""Multi-modal synthesis by style mixing (pSp's ``scripts/style_mixing.py``; ``scripts/inference.py --latent_mask``).

For each input, ``n_outputs`` random codes ``z`` go through the generator's mapping network (no truncation) to
``inject_ws``; the layers in ``latent_mask`` of the inversion's ``ws`` are then replaced by the injected ones
(``mix_alpha=None``) or blended, ``alpha * inject + (1 - alpha) * ws`` (pSp's ``forward(..., latent_mask,
inject_latent, alpha)``), and the mixed ``ws`` rendered. Every other layer is left untouched (bit-identical). For
sketch / segmentation / super-resolution models the fine layers (e.g. 8-17 at 1024 px) carry colour and texture, so
mixing them gives several plausible images for one ambiguous input.

pSp's scripts render the mixed codes with fresh random noise (``randomize_noise`` left at True) and draw ``z`` with
``np.random.randn`` per image; here the noise is ``noise_mode`` (default ``'const'``: deterministic) and ``z`` comes
from a seeded ``torch.Generator``, drawn image by image in input order (``[n_outputs, z_dim]`` each, on the CPU), or
is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["MultiModalResult", "inject_styles", "multimodal", "parse_latent_mask", "sample_inject_ws"]


def parse_latent_mask(latent_mask: str | int | Sequence[int], num_ws: int) -> list[int]:
    """``"8,9,10"``, ``"8:18"`` (START:STOP, stop excluded, as ``inversion edit --layers``), a mix of both, or a
    list of ints -> sorted layer indices, each in ``[0, num_ws)``, no repeats. A ``ValueError`` names the bad
    entries and the valid range."""
    if isinstance(latent_mask, str):
        items: list[int] = []
        for part in (p.strip() for p in latent_mask.split(",") if latent_mask.strip()):
            try:
                if ":" in part:
                    lo, hi = part.split(":", 1)
                    items += list(range(int(lo) if lo else 0, int(hi) if hi else num_ws))
                else:
                    items.append(int(part))
            except ValueError:
                raise ValueError(f"latent mask {latent_mask!r}: {part!r} is not a layer index or START:STOP; use "
                                 "e.g. 8,9,10 or 8:18") from None
    elif isinstance(latent_mask, int):
        items = [latent_mask]
    else:
        items = [int(i) for i in latent_mask]
    if not items:
        raise ValueError("latent mask is empty: name at least one W+ layer")
    bad = [i for i in items if not 0 <= i < num_ws]
    if bad:
        raise ValueError(f"latent mask layers {bad} out of range: this generator has {num_ws} W+ layers, "
                         f"indices 0..{num_ws - 1}")
    repeated = sorted({i for i in items if items.count(i) > 1})
    if repeated:
        raise ValueError(f"latent mask repeats layers {repeated}")
    return sorted(items)


def inject_styles(
    ws: torch.Tensor,  # [..., num_ws, w_dim]
    inject_ws: torch.Tensor,  # same shape (or broadcastable to it)
    latent_mask: Sequence[int],  # W+ layers to take from inject_ws
    alpha: float | None = None,  # None: replace; else alpha * inject + (1 - alpha) * ws on the masked layers
) -> torch.Tensor:
    """pSp's latent-mask injection on a copy of ``ws``; layers outside ``latent_mask`` are not touched."""
    num_ws = ws.shape[-2]
    layers = parse_latent_mask(list(latent_mask), num_ws)
    inject_ws = inject_ws.to(ws.dtype).expand_as(ws)
    out = ws.clone()
    idx = torch.tensor(layers, device=ws.device)
    picked = inject_ws.index_select(-2, idx)
    if alpha is not None:
        picked = alpha * picked + (1 - alpha) * ws.index_select(-2, idx)
    out[..., idx, :] = picked
    return out


def sample_inject_ws(
    generator: torch.nn.Module,  # a StyleGAN2 / StyleGAN3 generator (mapping, z_dim)
    num_images: int,
    n_outputs: int,
    *,
    z: torch.Tensor | None = None,  # [n_outputs, z_dim] (shared by every image) or [num_images, n_outputs, z_dim]
    rng: torch.Generator | None = None,  # draws z (CPU), [n_outputs, z_dim] per image in order
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, inject_ws)``: [num_images, n_outputs, z_dim] and their ``mapping(z)`` [num_images, n_outputs, num_ws,
    w_dim] (no truncation: pSp's ``net(z, input_code=True, return_latents=True)``)."""
    z_dim = generator.z_dim
    if z is None:
        z = torch.stack([torch.randn(n_outputs, z_dim, generator=rng) for _ in range(num_images)])
    z = torch.as_tensor(z)
    if z.ndim == 2:
        z = z.expand(num_images, -1, -1)
    if z.ndim != 3 or z.shape[0] != num_images or z.shape[-1] != z_dim:
        raise ValueError(f"z must be [n_outputs, {z_dim}] or [{num_images}, n_outputs, {z_dim}], got {tuple(z.shape)}")
    param = next(generator.parameters())
    with torch.no_grad():  # one z at a time, as pSp maps them (same numbers whatever the batch; the MLP is cheap)
        ws = torch.cat([generator.mapping(zi[None]) for zi in z.reshape(-1, z_dim).to(param.device, param.dtype)])
    return z, ws.reshape(*z.shape[:2], *ws.shape[1:])


@dataclass
class MultiModalResult:
    """What :func:`multimodal` made for a batch of N inputs and K outputs each."""

    ws: torch.Tensor  # [N, K, num_ws, w_dim] mixed latents
    images: torch.Tensor | None  # [N, K, 3, R, R] at the generator resolution (None with render=False)
    base_ws: torch.Tensor  # [N, num_ws, w_dim] the inversion before mixing
    inject_ws: torch.Tensor  # [N, K, num_ws, w_dim] mapping(z)
    z: torch.Tensor | None  # [N, K, z_dim] (None when inject_ws were given)
    latent_mask: list[int]
    mix_alpha: float | None


def multimodal(
    inverter,  # inversion.Inverter
    x: torch.Tensor,  # encoder input [N, C, S, S] (inverter.input_spec.prepare for sketches / label maps)
    latent_mask: str | Sequence[int],  # W+ layers to resample, e.g. [8, ..., 17] or "8-17"
    *,
    mix_alpha: float | None = None,  # None: replace those layers; a float: blend (pSp's --mix_alpha)
    n_outputs: int = 5,  # outputs per input (pSp's --n_outputs_to_generate)
    seed: int | None = 0,  # seeds the z draws (ignored with rng / z / inject_ws)
    rng: torch.Generator | None = None,  # draw z from this CPU generator (keeps drawing across calls)
    z: torch.Tensor | None = None,  # [K, z_dim] or [N, K, z_dim]
    inject_ws: torch.Tensor | None = None,  # [K, num_ws, w_dim] or [N, K, num_ws, w_dim] instead of z
    base_ws: torch.Tensor | None = None,  # mix these ws [N, num_ws, w_dim] instead of inverting x (e.g. refined)
    noise_mode: str = "const",
    render: bool = True,
    num_iters: int | None = None,
) -> MultiModalResult:
    """Invert ``x`` and resample the ``latent_mask`` layers ``n_outputs`` times (see the module docstring)."""
    G = inverter.generator
    layers = parse_latent_mask(latent_mask, G.num_ws)
    if mix_alpha is not None:
        mix_alpha = float(mix_alpha)
    if base_ws is None:
        with torch.no_grad():
            base_ws = inverter.invert(x, num_iters=num_iters, render=False).ws
    n = base_ws.shape[0]
    if inject_ws is not None:
        inject_ws = torch.as_tensor(inject_ws).to(base_ws)
        if inject_ws.ndim == 3:
            inject_ws = inject_ws.expand(n, -1, -1, -1)
        if inject_ws.ndim != 4 or inject_ws.shape[0] != n or inject_ws.shape[2:] != base_ws.shape[1:]:
            raise ValueError(f"inject_ws must be [K, {G.num_ws}, {G.w_dim}] or [{n}, K, {G.num_ws}, {G.w_dim}], "
                             f"got {tuple(inject_ws.shape)}")
        z_used = None
    else:
        if n_outputs < 1:
            raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
        if rng is None and z is None:
            rng = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        z_used, inject_ws = sample_inject_ws(G, n, n_outputs, z=z, rng=rng)
        inject_ws = inject_ws.to(base_ws)
    mixed = inject_styles(base_ws[:, None].expand_as(inject_ws), inject_ws, layers, mix_alpha)
    images = None
    if render:
        with torch.no_grad():
            images = torch.stack([G.synthesis(mixed[:, k], noise_mode=noise_mode)
                                  for k in range(mixed.shape[1])], dim=1)
    return MultiModalResult(ws=mixed, images=images, base_ws=base_ws, inject_ws=inject_ws, z=z_used,
                            latent_mask=layers, mix_alpha=mix_alpha)
