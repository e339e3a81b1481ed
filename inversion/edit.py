"""Edit inverted images in latent space: ``python -m inversion.edit --checkpoint CKPT --output DIR <edit> ...``.

Latents are the files ``python -m inversion.invert`` writes (``latents/<name>.pt`` or ``.npy``), or any
``.npy`` / ``.pt`` holding ``ws`` [num_ws, w_dim] (or one ``w`` [w_dim], broadcast to every layer). The
generator comes from ``--checkpoint`` (an inverter checkpoint) or ``--generator`` (a generator file).

Edits (:mod:`inversion.editing` does the maths):

* ``interpolate A B [--frames 8]``: morphing; ``frames/NNN.png``, ``interpolation.gif``, ``grid.png``;
* ``crossover A B --layer K``: style transfer: layers < K (coarse) from A, the rest from B;
* ``mix A B --layers 4:8``: style mixing: the listed layers from B, every other from A;
* ``expression W1 W2 W3 [--strength 1] [--threshold 0.5]``: Image2StyleGAN expression transfer
  ``W1 + strength * D(W3 - W2)`` (per-layer channel thresholding and normalization of the difference);
* ``direction W --direction smile.npy --strength -3 0 3 [--layers 0:8]``: InterFaceGAN-style directions.

Each edit writes its result latents (``<edit>.pt``, ``<edit>.npy``), images (``<edit>_<k>.png``) and
``grid.png`` (inputs, then results) into ``--output``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import editing
from .checkpoints import load_inverter
from .imageio import atomic_save, save_grid
from .models import CheckpointError, Generator, load_generator

__all__ = ["load_latents", "main", "parse_layers", "render"]


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
def render(generator: Generator, ws: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Images [N, 3, R, R] of ``ws`` [N, num_ws, w_dim] (const noise), in batches, on the generator's device."""
    device = generator.w_avg.device
    return torch.cat([generator.synthesis(ws[i : i + batch_size].to(device), noise_mode="const").float().cpu()
                      for i in range(0, ws.shape[0], batch_size)])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m inversion.edit", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="an inverter checkpoint (its generator is used)")
    src.add_argument("--generator", help="a generator file (rosinality .pt, pSp-family .pt or NVIDIA .pkl)")
    p.add_argument("--generator-path", default=None, help="our exports: where the referenced generator is now")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=256, help="tile size of grid.png and the GIF")
    sub = p.add_subparsers(dest="edit", required=True)
    s = sub.add_parser("interpolate", help="morph A into B")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--frames", type=int, default=8)
    s.add_argument("--duration-ms", type=int, default=100, help="GIF frame duration")
    s = sub.add_parser("crossover", help="coarse layers from A, fine layers from B")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--layer", type=int, required=True, help="layers < LAYER come from A")
    s = sub.add_parser("mix", help="the given layers from B, the others from A")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--layers", required=True, help="START:STOP or a comma-separated list")
    s = sub.add_parser("expression", help="W1 + strength * thresholded(W3 - W2)")
    s.add_argument("w1")
    s.add_argument("w2")
    s.add_argument("w3")
    s.add_argument("--strength", type=float, nargs="+", default=[1.0])
    s.add_argument("--threshold", type=float, default=0.5, help="per-channel, x the layer's RMS difference")
    s.add_argument("--layer-threshold", type=float, default=0.0, help="drop layers whose change norm is below")
    s.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True)
    s = sub.add_parser("direction", help="move along a direction vector (InterFaceGAN .npy / .pt)")
    s.add_argument("w")
    s.add_argument("--direction", required=True)
    s.add_argument("--strength", type=float, nargs="+", default=[-3.0, 0.0, 3.0])
    s.add_argument("--layers", default=None, help="START:STOP or a list (default: all layers)")
    s.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=False)
    return p


def _generator(args: argparse.Namespace) -> Generator:
    device = torch.device(args.device)
    if args.checkpoint:
        return load_inverter(args.checkpoint, device=device, generator_path=args.generator_path).generator
    return load_generator(args.generator, device=device)


def run_edit(args: argparse.Namespace, G: Generator) -> dict[str, torch.Tensor]:
    """The edit's inputs [k, num_ws, w_dim] and results [m, num_ws, w_dim]."""
    load = lambda p: load_latents(p, G.num_ws, G.w_dim)  # noqa: E731
    if args.edit == "interpolate":
        a, b = load(args.a), load(args.b)
        return {"inputs": torch.cat([a, b]), "results": editing.interpolate(a, b, args.frames)[:, 0]}
    if args.edit == "crossover":
        a, b = load(args.a), load(args.b)
        return {"inputs": torch.cat([a, b]), "results": editing.crossover(a, b, args.layer)}
    if args.edit == "mix":
        a, b = load(args.a), load(args.b)
        return {"inputs": torch.cat([a, b]), "results": editing.style_mix(a, b, parse_layers(args.layers))}
    if args.edit == "expression":
        w1, w2, w3 = load(args.w1), load(args.w2), load(args.w3)
        results = [editing.expression_transfer(w1, w2, w3, strength=s, threshold=args.threshold,
                                               layer_threshold=args.layer_threshold, normalize=args.normalize)
                   for s in args.strength]
        return {"inputs": torch.cat([w1, w2, w3]), "results": torch.cat(results)}
    if args.edit == "direction":
        w = load(args.w)
        direction = editing.load_direction(args.direction, num_ws=G.num_ws, w_dim=G.w_dim)
        layers = None if args.layers is None else parse_layers(args.layers)
        results = [editing.apply_direction(w, direction, s, layers, normalize=args.normalize) for s in args.strength]
        return {"inputs": w, "results": torch.cat(results)}
    raise ValueError(f"unknown edit {args.edit!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        G = _generator(args)
        latents = run_edit(args, G)
    except (FileNotFoundError, CheckpointError, ValueError, TypeError) as err:
        print(f"inversion.edit: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results = latents["results"]
    atomic_save({"edit": args.edit, "args": {k: v for k, v in vars(args).items() if k != "func"}, "ws": results},
                out / f"{args.edit}.pt")
    np.save(out / f"{args.edit}.npy", results.numpy().astype(np.float32))
    images = render(G, results)
    small = lambda x: torch.nn.functional.interpolate(x, size=(args.size, args.size), mode="area"  # noqa: E731
                                                      ) if x.shape[-1] > args.size else x
    for k, img in enumerate(images):
        save_grid(img[None], out / f"{args.edit}_{k:03d}.png", nrow=1, padding=0)
    inputs = render(G, latents["inputs"])
    ncol = max(len(inputs), len(images))
    blank = torch.ones(ncol - len(inputs), *small(inputs).shape[1:])  # white: the inputs' row is padded
    save_grid(torch.cat([small(inputs), blank, small(images)]), out / "grid.png", nrow=ncol)
    if args.edit == "interpolate":
        editing.save_frames_gif(small(images), out / "interpolation.gif", duration_ms=args.duration_ms)
    print(f"{args.edit}: {len(images)} result(s) written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
