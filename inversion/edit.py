"""Edit inverted images in latent space: ``python -m inversion edit --checkpoint CKPT --output DIR <edit> ...``.

Latents are the files ``python -m inversion invert`` writes (``latents/<name>.pt`` or ``.npy``), or any
``.npy`` / ``.pt`` holding ``ws`` [num_ws, w_dim] (or one ``w`` [w_dim], broadcast to every layer). The
generator comes from ``--checkpoint`` (an inverter checkpoint) or ``--generator`` (a generator file).

Edits (:mod:`inversion.editing` does the maths):

* ``interpolate A B [--frames 8]``: morphing; ``frames/NNN.png``, ``interpolation.gif``, ``grid.png``;
* ``crossover A B --layer K``: style transfer: layers < K (coarse) from A, the rest from B;
* ``mix A B --layers 4:8``: style mixing: the listed layers from B, every other from A;
* ``expression W1 W2 W3 [--strength 1] [--threshold 0.5]``: Image2StyleGAN expression transfer
  ``W1 + strength * D(W3 - W2)`` (per-layer channel thresholding and normalization of the difference);
* ``direction W --direction smile.npy --strength -3 0 3 [--layers 0:8]``: InterFaceGAN-style directions.

A latent file may also be a pivotal-tuning result (``tuned/<name>.pt`` of ``inversion invert --refine pti``): the
edit then applies to its pivot and the results are rendered through that image's tuned generator (the first
input's, when an edit takes several).

Each edit writes its result latents (``<edit>.pt``, ``<edit>.npy``), images (``<edit>_<k>.png``) and
``grid.png`` (inputs, then results) into ``--output`` (:func:`save_edit`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import editing
from .imageio import atomic_save, save_grid
from .models import Generator
from .refine import TuneResult

__all__ = ["load_latents", "parse_layers", "render", "save_edit"]


def load_latents(path: str | Path, num_ws: int, w_dim: int) -> torch.Tensor:
    """One image's latents as [1, num_ws, w_dim] float32 from ``.pt`` (a tensor, or a dict with ``ws``) or
    ``.npy``; a single ``w`` [w_dim] is broadcast to every layer. Errors name the file."""
    ws = editing.read_tensor_file(path, "latent", key="ws")  # inversion.invert's latents/*.pt hold {"ws": ...}
    if ws.ndim == 3 and ws.shape[0] == 1:
        ws = ws[0]
    if ws.ndim == 1 and ws.shape[0] == w_dim:
        ws = ws.expand(num_ws, -1)
    if tuple(ws.shape) != (num_ws, w_dim):
        raise ValueError(f"{path}: latents of shape {tuple(ws.shape)}, but the generator needs "
                         f"[{num_ws}, {w_dim}] (or [{w_dim}])")
    return ws[None].contiguous()


def parse_layers(spec: str) -> slice | list[int]:
    """``"4:8"`` -> slice(4, 8); ``":4"``, ``"8:"``; ``"0,2,5"`` -> [0, 2, 5]; ``"3"`` -> [3]."""
    try:
        if ":" in spec:
            lo, hi = spec.split(":", 1)
            return slice(int(lo) if lo else None, int(hi) if hi else None)
        return [int(s) for s in spec.split(",") if s.strip()]
    except ValueError as err:
        raise ValueError(f"layers {spec!r}: use START:STOP or a comma-separated list of ints") from err


@torch.no_grad()
def render(generator: Generator, ws: torch.Tensor, batch_size: int = 8, tuned: TuneResult | None = None
           ) -> torch.Tensor:
    """Images [N, 3, R, R] of ``ws`` [N, num_ws, w_dim] (const noise), in batches, on the generator's device;
    with ``tuned`` (a one-image :func:`inversion.refine.load_tuned` result) through its tuned generator."""
    if tuned is not None:
        return tuned.render(generator, ws, index=0, batch_size=batch_size).float().cpu()
    device = generator.w_avg.device
    return torch.cat([generator.synthesis(ws[i : i + batch_size].to(device), noise_mode="const").float().cpu()
                      for i in range(0, ws.shape[0], batch_size)])


def save_edit(
    generator: Generator,
    edit: str,
    inputs: torch.Tensor,
    results: torch.Tensor,
    output: str | Path,
    *,
    size: int = 256,
    duration_ms: int = 100,
    settings: dict | None = None,
    tuned: TuneResult | None = None,  # render through this tuned generator (see the module docstring)
) -> Path:
    """Write one edit into ``output``: ``<edit>.pt`` (``{"edit", "args": settings, "ws": results}``) and
    ``<edit>.npy``, every result image ``<edit>_<k>.png``, ``grid.png`` (the inputs' row, then the results, tiles
    of at most ``size`` px) and, for ``interpolate``, ``interpolation.gif``. ``inputs`` / ``results`` are
    [N, num_ws, w_dim]. Returns the folder."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save({"edit": edit, "args": dict(settings or {}), "ws": results}, out / f"{edit}.pt")
    np.save(out / f"{edit}.npy", results.numpy().astype(np.float32))
    images = render(generator, results, tuned=tuned)
    small = lambda x: torch.nn.functional.interpolate(x, size=(size, size), mode="area"  # noqa: E731
                                                      ) if x.shape[-1] > size else x
    for k, img in enumerate(images):
        save_grid(img[None], out / f"{edit}_{k:03d}.png", nrow=1, padding=0)
    shown = render(generator, inputs, tuned=tuned)
    ncol = max(len(shown), len(images))
    blank = torch.ones(ncol - len(shown), *small(shown).shape[1:])  # white: the inputs' row is padded
    save_grid(torch.cat([small(shown), blank, small(images)]), out / "grid.png", nrow=ncol)
    if edit == "interpolate":
        editing.save_frames_gif(small(images), out / "interpolation.gif", duration_ms=duration_ms)
    return out


if __name__ == "__main__":  # deprecated spelling of: python -m inversion edit
    from inversion.cli import deprecated_alias

    raise SystemExit(deprecated_alias("edit", "inversion.edit"))
