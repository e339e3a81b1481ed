"""``inversion export --to official CKPT OUT.pt``: one of our encoders as an official pSp / e4e / ReStyle checkpoint.

Argument parsing only: reading is :func:`inversion.export.load_for_export`, writing
:func:`inversion.export.export_official`; the layout and its limits are described in :mod:`inversion.export`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from inversion.export import ACCEPTED, export_official, load_for_export, official_encoder_type, official_family
from inversion.models import CheckpointError

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "inversion export") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Export a trained encoder in another checkpoint layout. --to official: the pSp / e4e / ReStyle "
                    "layout ({'state_dict': encoder.* + decoder.*, 'opts', 'latent_avg'}) that the official "
                    "inference and editing scripts read.",
    )
    p.add_argument("--to", required=True, choices=["official"], help="target layout")
    p.add_argument("checkpoint", type=Path, help=f"what to export: {ACCEPTED}")
    p.add_argument("output", type=Path, help="output file (.pt), written atomically")
    p.add_argument("--generator", type=Path, default=None,
                   help="the generator file, if it moved since training (our exports reference it by path)")
    p.add_argument("--settings", type=Path, default=None,
                   help="for a Lightning .ckpt: the run's export/inverter.pt (default: ../export/inverter.pt)")
    p.add_argument("--dataset-type", default="ffhq_encode",
                   help="opts.dataset_type, a key of the official data_configs (e.g. cars_encode); default %(default)s")
    p.add_argument("--allow-nonstandard", action="store_true",
                   help="write even if the official classes cannot rebuild the model's shapes (e.g. the small demo)")
    return p


def main(argv: Sequence[str] | None = None, *, prog: str = "inversion export") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        inverter, info = load_for_export(args.checkpoint, generator_path=args.generator, settings=args.settings)
        out = export_official(inverter, args.output, dataset_type=args.dataset_type,
                              stylegan_weights=info.get("stylegan_weights"), exp_dir=info.get("exp_dir"),
                              source=str(args.checkpoint), allow_nonstandard=args.allow_nonstandard)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    family = official_family(inverter.encoder)
    G = inverter.generator
    print(f"wrote {out}: {family.name} checkpoint (encoder_type={official_encoder_type(inverter.encoder)}, "
          f"output_size={G.img_resolution}, {G.num_ws} styles) for {family.repository} ({family.model})",
          file=sys.stderr)
    return 0
