"""Data-loader throughput alone: decoding + pSp transforms on the fly vs a prepared copy (images/s).

    python -m benchmarks.data                                   # 64 synthetic 1024 px PNGs in a temp folder
    python -m benchmarks.data --root /data/ffhq --split ffhq_val --limit 512 --workers 8

Two loaders over the same images, batch 8, ``--workers`` processes, after one warm-up pass:

* ``on the fly``: ``ImageIdDataset`` + ``conf/data/ffhq.yaml``'s train transforms (PNG/JPEG decode, Resize 256,
  flip, ToTensor, Normalize) -- what ``data=ffhq`` does;
* ``prepared``: ``PreparedDataset`` over ``python -m inversion prepare``'s copy (uint8 rows, flip) -- what
  ``data=ffhq_prepared`` does. The one-time preparation is timed too.

Synthetic images are smooth random fields (bicubic-upsampled noise, so PNG compression is closer to photos than
white noise). Writes benchmarks/results/data-<device>.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import save_results
from inversion.data import ImageIdDataset, PreparedDataset, collate_skip_none, prepare_dataset


def _pixel_transform(size: int):
    """conf/data/ffhq.yaml's training transforms (what data=ffhq runs), at ``size`` px."""
    from hydra.utils import instantiate

    from inversion.config import compose

    cfg = compose("train", ["data=ffhq"]).data.train.transform
    cfg.transforms[0].size = [size, size]
    return instantiate(cfg)


def synthetic_folder(root: Path, n: int, resolution: int, seed: int = 0) -> list[str]:
    """``n`` smooth random RGB PNGs of ``resolution`` px named 00000.png ...; returns their ids."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        small.resize((resolution, resolution), Image.Resampling.BICUBIC).save(root / f"{i:05d}.png")
        ids.append(str(i))
    return ids


def images_per_second(dataset, batch: int, workers: int, passes: int = 2) -> float:
    """Images/s of a DataLoader over ``dataset`` (best of ``passes`` full passes after one warm-up pass)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         collate_fn=collate_skip_none, persistent_workers=workers > 0)
    best = 0.0
    for k in range(passes + 1):
        t0 = time.perf_counter()
        count = sum(len(b["image"]) for b in loader if b is not None)
        rate = count / (time.perf_counter() - t0)
        if k > 0:
            best = max(best, rate)
    return best


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="real images (default: a temporary synthetic folder)")
    p.add_argument("--split", default=None, help="with --root: split name or file")
    p.add_argument("--limit", type=int, default=None, help="first N ids of the split")
    p.add_argument("--num-images", type=int, default=64, help="synthetic images")
    p.add_argument("--resolution", type=int, default=1024, help="synthetic image size")
    p.add_argument("--size", type=int, default=256, help="training size (pSp: 256)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--passes", type=int, default=2)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.root:
            if not args.split:
                p.error("--root needs --split")
            from inversion.data import read_split

            root, ids = Path(args.root), read_split(args.split)[: args.limit]
            source = f"{root} ({args.split}, {len(ids)} images)"
        else:
            root, ids = tmp / "src", synthetic_folder(tmp / "src", args.num_images, args.resolution)
            source = f"{len(ids)} synthetic {args.resolution} px PNGs"
        t0 = time.perf_counter()
        prepare_dataset(root, ids, tmp / "prepared", size=args.size, num_workers=args.workers, progress=False)
        prep_s = time.perf_counter() - t0
        fly = ImageIdDataset(root, ids, transform=_pixel_transform(args.size), skip_bad=True)
        prepared = PreparedDataset(tmp / "prepared", hflip=0.5)
        rows = [
            {"loader": "on the fly (decode + pSp transforms)", "images_per_s": images_per_second(
                fly, args.batch, args.workers, args.passes)},
            {"loader": "prepared (uint8 memmap + flip)", "images_per_s": images_per_second(
                prepared, args.batch, args.workers, args.passes)},
        ]
    for r in rows:
        r.update(source=source, size=args.size, batch=args.batch, workers=args.workers)
    print(f"Data loader alone, {source} -> {args.size} px, batch {args.batch}, {args.workers} workers "
          f"(one-time prepare: {prep_s:.1f} s, {len(ids) / prep_s:.1f} img/s)")
    for r in rows:
        print(f"{r['loader']:<40}{r['images_per_s']:>10.1f} img/s")
    device = torch.device("cpu")  # the loader runs on the host's CPUs
    print(f"wrote {save_results('data', device, rows, {'prepare_images_per_s': len(ids) / prep_s})}")
    return rows


if __name__ == "__main__":
    main()
