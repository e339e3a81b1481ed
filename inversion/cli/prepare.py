"""``inversion prepare``: a resized, decode-free copy of an image split (``images.npy`` + ``status.npy`` + ids),
so the training data loader is never the bottleneck; resumable.

Argument parsing only: the work is :func:`inversion.data.prepare_dataset`, the format is described in
:mod:`inversion.data.prepare` and served by :class:`inversion.data.PreparedDataset` (``data=ffhq_prepared``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from inversion.data import prepare as lib

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "inversion prepare") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=lib.__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--root", required=True, help="folder of the source images")
    p.add_argument("--split", required=True, help="split name (data_splits/, e.g. ffhq_train) or a split file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--min-size", type=int, default=0)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p


def main(argv: Sequence[str] | None = None, *, prog: str = "inversion prepare") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        meta = lib.prepare_dataset(args.root, args.split, args.out, size=args.size, num_workers=args.workers,
                                   min_size=args.min_size, progress=args.progress)
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"prepared {meta['num_written']} of {meta['num_images']} images at {args.size} px in {args.out}"
          + (f"; {meta['num_bad']} unusable (listed in meta.json)" if meta["num_bad"] else ""), file=sys.stderr)
    return 0
