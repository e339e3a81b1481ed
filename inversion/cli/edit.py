"""``inversion edit``: latent-space edits of inverted images (interpolate, crossover, mix, expression, direction).

Argument parsing only: the maths is :mod:`inversion.editing`, reading latents :func:`inversion.edit.load_latents`,
writing results :func:`inversion.edit.save_edit`; the edits and their files are described in :mod:`inversion.edit`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from inversion import edit as lib
from inversion import editing
from inversion.checkpoints import load_inverter
from inversion.models import CheckpointError, Generator, load_generator
from inversion.refine import TuneResult, is_tuned_file, load_tuned

__all__ = ["build_parser", "main", "run_edit"]


def build_parser(prog: str = "inversion edit") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=lib.__doc__.split("\n\n")[0])
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
    load = lambda p: lib.load_latents(p, G.num_ws, G.w_dim)  # noqa: E731
    if args.edit == "interpolate":
        a, b = load(args.a), load(args.b)
        return {"inputs": torch.cat([a, b]), "results": editing.interpolate(a, b, args.frames)[:, 0]}
    if args.edit == "crossover":
        a, b = load(args.a), load(args.b)
        return {"inputs": torch.cat([a, b]), "results": editing.crossover(a, b, args.layer)}
    if args.edit == "mix":
        a, b = load(args.a), load(args.b)
        return {"inputs": torch.cat([a, b]), "results": editing.style_mix(a, b, lib.parse_layers(args.layers))}
    if args.edit == "expression":
        w1, w2, w3 = load(args.w1), load(args.w2), load(args.w3)
        results = [editing.expression_transfer(w1, w2, w3, strength=s, threshold=args.threshold,
                                               layer_threshold=args.layer_threshold, normalize=args.normalize)
                   for s in args.strength]
        return {"inputs": torch.cat([w1, w2, w3]), "results": torch.cat(results)}
    if args.edit == "direction":
        w = load(args.w)
        direction = editing.load_direction(args.direction, num_ws=G.num_ws, w_dim=G.w_dim)
        layers = None if args.layers is None else lib.parse_layers(args.layers)
        results = [editing.apply_direction(w, direction, s, layers, normalize=args.normalize) for s in args.strength]
        return {"inputs": w, "results": torch.cat(results)}
    raise ValueError(f"unknown edit {args.edit!r}")


def _tuned(args: argparse.Namespace, G: Generator) -> TuneResult | None:
    """The first input's pivotal-tuning result when it is a ``tuned/<name>.pt`` file (else None)."""
    first = next(getattr(args, k) for k in ("a", "w1", "w") if getattr(args, k, None))
    return load_tuned(first, G) if is_tuned_file(first) else None


def main(argv: Sequence[str] | None = None, *, prog: str = "inversion edit") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        G = _generator(args)
        latents = run_edit(args, G)
        tuned = _tuned(args, G)
    except (FileNotFoundError, CheckpointError, ValueError, TypeError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    out = lib.save_edit(G, args.edit, latents["inputs"], latents["results"], args.output, size=args.size,
                        duration_ms=getattr(args, "duration_ms", 100), settings=vars(args), tuned=tuned)
    print(f"{args.edit}: {len(latents['results'])} result(s) written to {out}", file=sys.stderr)
    return 0
