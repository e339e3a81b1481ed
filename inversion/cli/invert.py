"""``inversion invert``: photos -> latents and reconstructions (optionally FFHQ-aligned first and refined).

Argument parsing only: the work is :func:`inversion.invert.invert_images`. The refine config comes from
:func:`inversion.invert.load_refine_config` (``conf/refine/<name>.yaml`` composed through
:func:`inversion.config.compose`), so ``--refine-set paths.vgg16=/w/vgg16.pth`` sets a weight file exactly as
in training. What is written, and the exit status: :mod:`inversion.invert`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from inversion import invert as lib
from inversion.checkpoints import load_inverter
from inversion.imageio import RESIZE_MODES
from inversion.inverter import AUTOCAST_DTYPES
from inversion.models import CheckpointError

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "inversion invert") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=lib.__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="official pSp/e4e/ReStyle .pt or one of our exports")
    p.add_argument("--generator-path", default=None, help="our exports: where the referenced generator is now")
    p.add_argument("--input", nargs="+", required=True, help="image files and/or folders of images")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=False,
                   help="FFHQ-align faces first (MTCNN 5-point landmarks; weights ship with facenet-pytorch)")
    p.add_argument("--sg3-unaligned", action="store_true",
                   help="with --align and a StyleGAN3 generator: also render the latents in the photo's unaligned "
                        "framing (unaligned/, unaligned_input/; the input transform in the latents and summary)")
    p.add_argument("--align-size", type=int, default=None, help="aligned crop size (default: the encoder size)")
    p.add_argument("--select", choices=("largest", "most_confident"), default="largest",
                   help="which face to keep when several are found")
    p.add_argument("--refine", default=None,
                   help="refine config: none, image2stylegan, projector, noise, pti (pivotal tuning), or a YAML")
    p.add_argument("--refine-steps", type=int, default=None, help="override the refine config's num_steps")
    p.add_argument("--refine-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="refine config overrides, e.g. paths.vgg16=/w/vgg16.pth lr=0.05 rank=8")
    p.add_argument("--refine-size", type=int, default=256, help="refinement compares images at this size")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-iters", type=int, default=None, help="ReStyle steps (default: the checkpoint's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(lib.DTYPES), default="float32",
                   help="encoder + generator dtype (bfloat16: GPU; refinement always runs in float32)")
    p.add_argument("--autocast", choices=sorted(AUTOCAST_DTYPES), default=None,
                   help="fast path: run the inverter under torch.autocast (weights stay float32)")
    p.add_argument("--channels-last", action="store_true", help="fast path: encoder in channels_last memory format")
    p.add_argument("--compile", default=None, metavar="MODE",
                   help="fast path: torch.compile the encoder and generator (default, reduce-overhead, max-autotune)")
    p.add_argument("--input-resize-mode", choices=RESIZE_MODES, default="bilinear_antialias")
    p.add_argument("--latent-mask", default=None, metavar="LAYERS",
                   help="multi-modal synthesis (pSp style mixing): W+ layers to resample from random z, e.g. "
                        "8,9,10 or 8:18; writes multimodal/<name>/")
    p.add_argument("--mix-alpha", type=float, default=None,
                   help="with --latent-mask: blend alpha*injected + (1-alpha)*inverted on those layers "
                        "(default: replace them)")
    p.add_argument("--n-outputs", type=int, default=None, help="with --latent-mask: outputs per image (default 5)")
    p.add_argument("--mix-seed", type=int, default=0, help="with --latent-mask: seed of the random z")
    p.add_argument("--grid-images", type=int, default=16)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p


def main(argv: Sequence[str] | None = None, *, prog: str = "inversion invert") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        if args.latent_mask is None and (args.mix_alpha is not None or args.n_outputs is not None):
            raise ValueError("--mix-alpha / --n-outputs need --latent-mask (the W+ layers to resample)")
        if args.sg3_unaligned and not args.align:
            raise ValueError("--sg3-unaligned needs --align: the unaligned framing comes from the face alignment")
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: CUDA is not available; use --device cpu")
        dtype = lib.DTYPES[args.dtype]
        if dtype != torch.float32 and args.refine not in (None, "none"):
            # refinement optimises in float32: the generator must be float32 too
            raise ValueError("--refine needs --dtype float32 (refinement optimises latents in float32)")
        inverter = load_inverter(args.checkpoint, device=device, dtype=dtype if dtype != torch.float32 else None,
                                 generator_path=args.generator_path)
        inverter.set_fast_path(autocast=args.autocast, channels_last=args.channels_last, compile=args.compile)
        refiner = None
        if args.refine not in (None, "none"):
            from inversion.refine import build_refiner

            overrides = list(args.refine_set) + ([f"num_steps={args.refine_steps}"] if args.refine_steps else [])
            refiner = build_refiner(lib.load_refine_config(args.refine, overrides), device=device)
            from inversion.refine import Tuner, tuned_parameter_names

            if isinstance(refiner, Tuner) and not tuned_parameter_names(inverter.generator):
                raise ValueError(f"--refine {args.refine}: pivotal tuning needs a StyleGAN2 or StyleGAN3 generator; "
                                 f"this checkpoint's is a {type(inverter.generator).__name__}")
        if args.sg3_unaligned:
            from inversion.unaligned import has_input_transform

            if not has_input_transform(inverter.generator):
                raise ValueError(f"--sg3-unaligned needs a StyleGAN3 generator (synthesis.input.transform); this "
                                 f"checkpoint's is a {type(inverter.generator).__name__}")
        if inverter.input_spec.mode != "rgb" and (args.align or refiner is not None):
            raise ValueError(f"this checkpoint reads {inverter.input_spec.mode} inputs: --align and --refine need "
                             "RGB photos")
        if args.latent_mask is not None:
            from inversion.style_mixing import parse_latent_mask

            parse_latent_mask(args.latent_mask, inverter.generator.num_ws)
            args.n_outputs = 5 if args.n_outputs is None else args.n_outputs
            if args.n_outputs < 1:
                raise ValueError(f"--n-outputs must be >= 1, got {args.n_outputs}")
        aligner = None
        if args.align:
            from inversion.align import FaceAligner

            aligner = FaceAligner(output_size=args.align_size or max(*inverter.encoder_hw, 256),
                                  select=args.select, device=device)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    summary = lib.invert_images(
        inverter, args.input, args.output, aligner=aligner, unaligned=args.sg3_unaligned, refiner=refiner,
        refine_size=args.refine_size, batch_size=args.batch_size, num_iters=args.num_iters,
        input_resize_mode=args.input_resize_mode, grid_images=args.grid_images, checkpoint=str(args.checkpoint),
        latent_mask=args.latent_mask, mix_alpha=args.mix_alpha, n_outputs=args.n_outputs or 5, mix_seed=args.mix_seed,
        progress=args.progress)
    n, k = len(summary.processed), len(summary.skipped)
    print(f"inverted {n} image(s), skipped {k}; outputs in {args.output}", file=sys.stderr)
    return 0 if n else 1


