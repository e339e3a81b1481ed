#!/usr/bin/env python
"""Write the Stanford Cars split files ``data_splits/cars_train.txt`` and ``data_splits/cars_test.txt``.

    python scripts/make_cars_splits.py [--train-annos FILE] [--test-annos FILE] [--out DIR] [--check]
    python scripts/make_cars_splits.py --cars-annos cars_annos.mat --out DIR     # the car_ims/ layout instead

Where the data comes from: Stanford Cars (Krause, Stark, Deng, Fei-Fei, "3D Object Representations for
Fine-Grained Categorization", 3dRR 2013; https://ai.stanford.edu/~jkrause/cars/car_dataset.html; the site has been
unreliable, see pytorch/vision#7545, and mirrors keep the same files). It ships as

* ``cars_train.tgz``: ``cars_train/00001.jpg`` ... ``08144.jpg`` (8,144 images);
* ``cars_test.tgz``: ``cars_test/00001.jpg`` ... ``08041.jpg`` (8,041 images);
* ``car_devkit.tgz``: ``devkit/cars_train_annos.mat`` and ``devkit/cars_test_annos.mat``, each an ``annotations``
  struct array (bbox_x1, bbox_y1, bbox_x2, bbox_y2, class (train only), fname) in which annotation M is image M
  (devkit README); ``cars_test_annos_withlabels.mat`` (released later) is the test file with classes;
* the later single collection ``car_ims.tgz`` + ``cars_annos.mat``: all 16,185 images renumbered
  ``car_ims/000001.jpg`` ... (``relative_im_path``) with a ``test`` flag per image. Its numbering is not that of
  ``cars_train/`` / ``cars_test/`` and the file holds no mapping between the two.

The official e4e and ReStyle ``cars_encode`` experiments (``configs/data_configs.py``; pSp has none) train on the whole
``cars_train`` folder and test on the whole ``cars_test`` folder (``dataset_paths['cars_train']`` /
``['cars_test']``), every image resized to 192x256 (``CarsEncodeTransforms``). The split files list those folders'
file stems, in annotation order: from ``--train-annos`` / ``--test-annos`` when given (the ``fname`` fields, read
with ``scipy.io.loadmat``), otherwise from the documented naming above; the two agree. Both files hold ids 00001...,
so use each with its own folder as the data root.

``--cars-annos cars_annos.mat`` writes ``car_ims_train.txt`` / ``car_ims_test.txt`` instead (6-digit ``car_ims/``
stems split by the ``test`` flag, in file order) into ``--out``, which must then be given: they depend on that file
and are not committed. ``--check`` compares the would-be ``cars_*`` files with those in ``--out`` and exits 1 on any
difference. The derivations are :func:`inversion.data.splits.derive_cars_splits` and ``derive_car_ims_splits``.
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
    CARS_SPLIT_SIZES,
    derive_car_ims_splits,
    derive_cars_splits,
    write_split,
)

COMMAND = "python scripts/make_cars_splits.py"
SOURCE = [
    "Stanford Cars (Krause et al., 3dRR 2013), https://ai.stanford.edu/~jkrause/cars/car_dataset.html:",
    "cars_train.tgz = cars_train/00001.jpg..08144.jpg, cars_test.tgz = cars_test/00001.jpg..08041.jpg;",
    "car_devkit.tgz's cars_train_annos.mat / cars_test_annos.mat list the same file names ('fname',",
    "annotation M is image M). The official e4e / ReStyle cars_encode experiments train on the whole",
    "cars_train folder and test on the whole cars_test folder (configs/data_configs.py).",
]


def build(annotations: dict[str, Path] | None = None) -> dict[str, tuple[list[str], list[str]]]:
    """``{"cars_train": (header_lines, ids), "cars_test": ...}``; the header does not depend on the source."""
    derived = derive_cars_splits(annotations)
    out = {}
    for split, ids in derived.items():
        out[f"cars_{split}"] = (
            [
                f"cars_{split}: {len(ids)} Stanford Cars {split} image ids, {ids[0]}..{ids[-1]} in annotation order:",
                f"the file stems of cars_{split}/ (5-digit, zero-padded; ids repeat across the train and test",
                "files, each names an image of its own folder).",
                *SOURCE,
                f"Regenerate with: {COMMAND} [--train-annos FILE] [--test-annos FILE]",
                "(the devkit annotations' 'fname' fields, or the documented naming without them: the same ids).",
            ],
            ids,
        )
    return out


def build_car_ims(cars_annos: Path) -> dict[str, tuple[list[str], list[str]]]:
    """``{"car_ims_train": ..., "car_ims_test": ...}`` from ``cars_annos.mat`` (the car_ims/ layout)."""
    digest = hashlib.sha256(cars_annos.read_bytes()).hexdigest()
    out = {}
    for split, ids in derive_car_ims_splits(cars_annos).items():
        out[f"car_ims_{split}"] = (
            [
                f"car_ims_{split}: {len(ids)} Stanford Cars {split} image ids of the car_ims/ layout (car_ims.tgz,",
                "000001.jpg..016185.jpg, 6-digit stems), in cars_annos.mat order, split by its 'test' flag",
                f"(cars_annos.mat sha256 {digest}). Not the cars_train/ / cars_test/ numbering.",
                f"Regenerate with: {COMMAND} --cars-annos cars_annos.mat --out DIR",
            ],
            ids,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-annos", type=Path, help="devkit/cars_train_annos.mat ('fname' of cars_train/)")
    parser.add_argument("--test-annos", type=Path,
                        help="devkit/cars_test_annos.mat or cars_test_annos_withlabels.mat ('fname' of cars_test/)")
    parser.add_argument("--cars-annos", type=Path, help="cars_annos.mat: write car_ims_{train,test}.txt to --out")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: data_splits/)")
    parser.add_argument("--check", action="store_true", help="only compare with the files in --out")
    args = parser.parse_args(argv)

    if args.cars_annos is not None:
        if args.train_annos or args.test_annos or args.check:
            parser.error("--cars-annos goes alone (with --out): it describes the car_ims/ layout")
        if args.out is None or args.out.resolve() == (REPO_ROOT / "data_splits").resolve():
            parser.error("--cars-annos needs --out DIR outside data_splits/ (car_ims splits are not committed)")
        files = build_car_ims(args.cars_annos)
    else:
        annotations = {k: v for k, v in (("train", args.train_annos), ("test", args.test_annos)) if v is not None}
        files = build(annotations)
        for split, source in (("train", args.train_annos), ("test", args.test_annos)):
            print(f"cars_{split}: {CARS_SPLIT_SIZES[split]} ids from {source or 'the documented naming'}")
    out = args.out or REPO_ROOT / "data_splits"
    if args.check:
        stale = []
        with tempfile.TemporaryDirectory() as tmp:
            for name, (header, ids) in files.items():
                new = write_split(Path(tmp) / f"{name}.txt", ids, header).read_text(encoding="utf-8")
                old = out / f"{name}.txt"
                if not old.is_file() or old.read_text(encoding="utf-8") != new:
                    stale.append(str(old))
        if stale:
            print("out of date: " + ", ".join(stale) + f"; run {COMMAND}", file=sys.stderr)
            return 1
        print(f"all {len(files)} Stanford Cars split files are up to date")
        return 0
    for name, (header, ids) in files.items():
        print(f"{write_split(out / f'{name}.txt', ids, header)}: {len(ids)} ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
