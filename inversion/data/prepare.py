"""A one-time, resized, decode-free copy of an image split, so the data loader is never the bottleneck.

``python -m inversion prepare --root /data/ffhq --split ffhq_train --size 256 --out /data/ffhq_train_256``
reads every image of the split once (ids resolved as :class:`~inversion.data.ImageIdDataset` does), resizes it
with torchvision's ``Resize((size, size))`` on the PIL image (the first step of the pSp transforms, so the result
is bit-identical to the on-the-fly pipeline), and stores it as 8-bit RGB rows of one NumPy memory-mapped array:

* ``images.npy`` -- uint8 [N, size, size, 3] (``np.load(..., mmap_mode="r")``: reading an item is a memory copy);
* ``status.npy`` -- int8 [N]: 0 = not yet written, 1 = written, 2 = unusable source image;
* ``ids.txt`` -- the split's ids, one per line, row order;
* ``meta.json`` -- source root and split, size, resize method, the unusable files with their reasons.

Writing is resumable: ``status.npy`` is flushed after every chunk, and a rerun continues where an interrupted
one stopped (a different size, split or root in the same folder is refused). :class:`PreparedDataset` serves
the written rows as ``{"image": float [3, size, size] in [-1, 1], "id"}`` with an optional random horizontal
flip (pSp's training augmentation), skipping unusable rows.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import functional as TF

from ..imageio import atomic_save, atomic_write_json
from .folder import ImageIdDataset
from .splits import ids_sha256, read_split

__all__ = ["FORMAT", "PreparedDataset", "ResizeToArray", "prepare_dataset"]

FORMAT = "inversion.prepared/v1"
TODO, DONE, BAD = 0, 1, 2


class ResizeToArray:
    """PIL RGB image -> uint8 [size, size, 3] array via torchvision ``Resize((size, size))`` (bilinear, antialiased
    on PIL images), exactly the first step of pSp's transforms. A class (not a lambda) so workers can pickle it."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, image: Image.Image) -> np.ndarray:
        return np.asarray(TF.resize(image, [self.size, self.size]), dtype=np.uint8)


def _collate(batch: Sequence[dict[str, Any] | None]) -> list[dict[str, Any] | None]:
    return list(batch)


def _npy_writer(array: np.ndarray, path: Path) -> None:
    with open(path, "wb") as f:  # a file object: np.save adds no ".npy" to the temporary name
        np.save(f, array)


def prepare_dataset(
    root: str | os.PathLike,  # Folder of source images.
    ids: Sequence[str] | str | os.PathLike,  # Split name, split file or list of ids (see read_split).
    out: str | os.PathLike,  # Output folder (created; resumed when it holds an unfinished copy of the same).
    *,
    size: int = 256,  # Side of the stored images.
    num_workers: int = 4,  # Decoding processes.
    chunk: int = 64,  # Images written between two flushes of status.npy.
    min_size: int = 0,  # Source images whose shorter side is below this count as unusable.
    progress: bool = True,
) -> dict[str, Any]:
    """Write the prepared copy (see the module docstring); returns the content of ``meta.json``."""
    split = str(ids) if isinstance(ids, str | os.PathLike) else "ids given as a list"
    ids = read_split(ids) if isinstance(ids, str | os.PathLike) else [str(i) for i in ids]
    if not ids:
        raise ValueError("the split has no ids")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    source = ImageIdDataset(root, ids, transform=ResizeToArray(size), skip_bad=True, require_rgb=False,
                            min_size=min_size)  # every missing id is reported here, before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    meta = {"format": FORMAT, "root": str(Path(root).resolve()), "split": split, "num_images": len(ids),
            "ids_sha256": ids_sha256(source.ids), "size": size,
            "resize": "torchvision.transforms.functional.resize(PIL image, [size, size]): bilinear, antialiased",
            "min_size": min_size, "layout": "images.npy uint8 [N, size, size, 3]; status.npy int8 [N] "
                                            "(0 todo, 1 written, 2 unusable)"}
    images_path, status_path = out / "images.npy", out / "status.npy"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        keys = ("format", "root", "ids_sha256", "size", "min_size")
        diff = [k for k in keys if old.get(k) != meta[k]]
        if diff:
            raise ValueError(f"{out} holds a prepared copy with other settings ({', '.join(diff)}); "
                             "use another folder or delete it")
        images = np.load(images_path, mmap_mode="r+")
        status = np.load(status_path)
    else:
        images = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=(len(ids), size, size, 3))
        status = np.zeros(len(ids), dtype=np.int8)
        atomic_save(status, status_path, _npy_writer)
        (out / "ids.txt").write_text("\n".join(source.ids) + "\n", encoding="utf-8")
        atomic_write_json(meta_path, {**meta, "bad": {}})
    bad: dict[str, str] = dict(json.loads(meta_path.read_text()).get("bad", {}))
    todo = np.flatnonzero(status == TODO).tolist()

    from tqdm.auto import tqdm

    bar = tqdm(total=len(ids), initial=len(ids) - len(todo), unit="img", desc="prepare", disable=not progress)

    def flush() -> None:
        images.flush()
        atomic_save(status, status_path, _npy_writer)  # after the pixels: a row marked written is complete
        atomic_write_json(meta_path, {**meta, "bad": bad})

    loader = DataLoader(torch.utils.data.Subset(source, todo), batch_size=1, num_workers=num_workers,
                        collate_fn=_collate)
    for k, (index, (item,)) in enumerate(zip(todo, loader), start=1):
        if item is None:  # the worker warned with the file and the reason
            status[index] = BAD
            bad[source.ids[index]] = f"unusable image {source.paths[index]}"
        else:
            images[index] = item["image"]
            status[index] = DONE
        bar.update(1)
        if k % chunk == 0:
            flush()
    flush()
    bar.close()
    meta = {**meta, "bad": bad, "num_written": int((status == DONE).sum()), "num_bad": int((status == BAD).sum())}
    atomic_write_json(meta_path, meta)
    return meta


class PreparedDataset(Dataset):
    """Rows of a :func:`prepare_dataset` folder as ``{"image": [3, S, S] float in [-1, 1], "id"}``.

    Unusable source images (and rows an interrupted ``prepare`` did not write) are left out, with a warning.
    """

    def __init__(
        self,
        path: str | os.PathLike,  # Folder written by prepare_dataset.
        hflip: float = 0.0,  # Probability of a horizontal flip (pSp training: 0.5).
        ids: Sequence[str] | str | os.PathLike | None = None,  # Restrict to these ids (default: every row).
    ):
        self.path = Path(path)
        if not (self.path / "meta.json").is_file():
            raise FileNotFoundError(f"{self.path}: not a prepared dataset (no meta.json); write one with "
                                    "python -m inversion prepare --root DIR --split NAME --out DIR")
        self.meta = json.loads((self.path / "meta.json").read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{self.path}: unknown prepared format {self.meta.get('format')!r}")
        all_ids = (self.path / "ids.txt").read_text(encoding="utf-8").split()
        status = np.load(self.path / "status.npy")
        rows = np.flatnonzero(status == DONE)
        if len(rows) < len(all_ids):
            warnings.warn(f"{self.path}: {len(all_ids) - len(rows)} of {len(all_ids)} rows are not usable "
                          f"({int((status == BAD).sum())} unusable sources, {int((status == TODO).sum())} not "
                          "written yet: rerun prepare to finish)", stacklevel=2)
        if ids is not None:
            wanted = read_split(ids) if isinstance(ids, str | os.PathLike) else [str(i) for i in ids]
            index = {all_ids[r]: r for r in rows}
            missing = [i for i in wanted if i not in index]
            if missing:
                raise FileNotFoundError(f"{self.path}: {len(missing)} requested ids are not prepared, e.g. "
                                        f"{missing[:5]}")
            rows = np.asarray([index[i] for i in wanted], dtype=np.int64)
        self.rows = rows
        self.ids = [all_ids[r] for r in rows]
        self.hflip = float(hflip)
        self._images: np.ndarray | None = None  # opened lazily: each worker maps the file itself

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.path / "images.npy", mmap_mode="r")
        return self._images

    def __getitem__(self, i: int) -> dict[str, Any]:
        array = torch.from_numpy(np.array(self.images[self.rows[i]]))  # [S, S, 3] uint8, copied out of the map
        image = array.permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        if self.hflip > 0 and torch.rand(()) < self.hflip:
            image = image.flip(-1)
        return {"image": image, "id": self.ids[i]}

    def __getstate__(self) -> dict[str, Any]:  # workers re-open the memory map
        return {**self.__dict__, "_images": None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r}, n={len(self)}, size={self.meta['size']})"


if __name__ == "__main__":  # deprecated spelling of: python -m inversion prepare
    from inversion.cli import deprecated_alias

    raise SystemExit(deprecated_alias("prepare", "inversion.data.prepare"))
