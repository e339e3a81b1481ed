#!/usr/bin/env python
"""Regenerate the files in ``data_splits/`` (the Stanford Cars ones: ``scripts/make_cars_splits.py``).

    python scripts/make_splits.py [--mapping PATH] [--out DIR] [--check]

The CelebA-HQ splits are derived from ``CelebA-HQ-to-CelebA-mapping.txt`` (default:
``../shared/data/celebahq/CelebA-HQ-to-CelebA-mapping.txt`` relative to the repository root, or
``$INVERSION_SHARED/data/celebahq/...``) with CelebA's official train/val/test partition.
``--check`` compares the would-be output with the committed files and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from inversion.data.splits import (  # noqa: E402
    CELEBA_PARTITION,
    default_mapping_path,
    derive_celebahq_splits,
    write_split,
)

COMMAND = "python scripts/make_splits.py"


def _ffhq(header_cmd: str) -> dict[str, tuple[list[str], list[str]]]:
    common = [
        "FFHQ (Flickr-Faces-HQ) image ids, zero-padded to 5 digits as in the official file names",
        "(images1024x1024/NN000/NNNNN.png); ImageIdDataset also resolves flat NNNNN.png layouts.",
        "Split: FFHQ's own designation, 'the first 60,000 images for training and the remaining",
        "10,000 for validation' (NVlabs/ffhq-dataset README): train = 00000-59999, val = 60000-69999.",
        f"Regenerate with: {header_cmd}",
    ]
    return {
        "ffhq_all": (
            ["ffhq_all: 70000 ids, 00000..69999 ascending: every FFHQ image, the training set of the",
             "official pSp / e4e / ReStyle ffhq_encode experiments (their dataset_paths['ffhq'] is the",
             "whole image folder; they validate on CelebA-HQ test, data_splits/celebahq_test.txt).",
             *common[:2], common[-1]],
            [f"{i:05d}" for i in range(0, 70000)],
        ),
        "ffhq_train": (
            ["ffhq_train: 60000 ids, 00000..59999 ascending.", *common],
            [f"{i:05d}" for i in range(0, 60000)],
        ),
        "ffhq_val": (
            ["ffhq_val: 10000 ids, 60000..69999 ascending.", *common],
            [f"{i:05d}" for i in range(60000, 70000)],
        ),
    }


def _celebahq(mapping: Path, header_cmd: str) -> dict[str, tuple[list[str], list[str]]]:
    derived = derive_celebahq_splits(mapping)
    digest = hashlib.sha256(mapping.read_bytes()).hexdigest()
    out = {}
    for split, ids in derived.items():
        lo, hi = CELEBA_PARTITION[split]
        out[f"celebahq_{split}"] = (
            [
                f"celebahq_{split}: {len(ids)} CelebA-HQ image indices (0..29999), ascending, unpadded.",
                "Ids are the 'idx' column of CelebA-HQ-to-CelebA-mapping.txt (CelebA-HQ / CelebAMask-HQ",
                f"release; sha256 {digest}).",
                "Derivation: idx is in this split iff its 'orig_file' NNNNNN.jpg has",
                f"{lo} <= NNNNNN <= {hi},",
                "i.e. CelebA's official partition (train 000001-162770, val 162771-182637,",
                "test 182638-202599). Yields 24183 train / 2993 val / 2824 test, the standard",
                "CelebA-HQ split of the pSp / e4e / ReStyle papers.",
                "Image files: ImageIdDataset resolves id 7 to 7.jpg / 7.png (unpadded, e.g. CelebAMask-HQ)",
                "or to 00007.png / 00007.jpg (5-digit zero-padded), whichever exists under the root.",
                f"Regenerate with: {header_cmd} [--mapping PATH], default mapping",
                "../shared/data/celebahq/CelebA-HQ-to-CelebA-mapping.txt next to the repository",
                "(the derivation itself is inversion.data.splits.derive_celebahq_splits).",
            ],
            ids,
        )
    return out


def _demo(header_cmd: str) -> dict[str, tuple[list[str], list[str]]]:
    note = [
        "These are StyleGAN generator SEEDS, not image files: the embedded demo samples each",
        "training / evaluation image from a small StyleGAN generator, one image per seed.",
        f"Regenerate with: {header_cmd}",
    ]
    return {
        "demo_train": (["demo_train: 256 generator seeds 0..255.", *note], [str(i) for i in range(256)]),
        "demo_val": (
            ["demo_val: 16 generator seeds 1000..1015.", *note],
            [str(i) for i in range(1000, 1016)],
        ),
        "smoke": (
            ["smoke: 4 generator seeds 1000..1003 for fast CI smoke runs (a subset of demo_val).", *note],
            [str(i) for i in range(1000, 1004)],
        ),
    }


def build_all(mapping: Path) -> dict[str, tuple[list[str], list[str]]]:
    """All split files as ``{name: (header_lines, ids)}``."""
    return {**_ffhq(COMMAND), **_celebahq(mapping, COMMAND), **_demo(COMMAND)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mapping",
        type=Path,
        default=default_mapping_path(),
        help="path to CelebA-HQ-to-CelebA-mapping.txt (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data_splits", help="output folder")
    parser.add_argument("--check", action="store_true", help="only compare with the files in --out")
    args = parser.parse_args(argv)

    if not args.mapping.is_file():
        parser.error(f"mapping file not found: {args.mapping} (pass --mapping or set INVERSION_SHARED)")
    files = build_all(args.mapping)
    if args.check:
        stale = []
        with tempfile.TemporaryDirectory() as tmp:
            for name, (header, ids) in files.items():
                new = write_split(Path(tmp) / f"{name}.txt", ids, header).read_text(encoding="utf-8")
                old_path = args.out / f"{name}.txt"
                if not old_path.is_file() or old_path.read_text(encoding="utf-8") != new:
                    stale.append(str(old_path))
        if stale:
            print("out of date: " + ", ".join(stale) + f"; run {COMMAND}", file=sys.stderr)
            return 1
        print(f"all {len(files)} split files are up to date")
        return 0
    for name, (header, ids) in files.items():
        path = write_split(args.out / f"{name}.txt", ids, header)
        print(f"{path}: {len(ids)} ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
