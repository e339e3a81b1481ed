"""A folder-of-images dataset addressed by image ids (FFHQ / CelebA-HQ style naming)."""

from __future__ import annotations

import functools
import os
import posixpath
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset, default_collate

from ..imageio import from_pil, read_rgb
from .splits import read_split

__all__ = ["IMAGE_EXTENSIONS", "ImageIdDataset", "collate_skip_none", "id_candidates",
           "read_rgb"]

#: Extensions tried (case-insensitively) for an id without an extension, in order of preference.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")

NAMING_SCHEMES = (
    "exact relative path when the id has an image extension ('a/b.png')",
    "'<id><ext>' as written ('00000.png', '0.jpg')",
    "5-digit zero-padded '<NNNNN><ext>' ('00007.png')",
    "unpadded '<N><ext>' ('7.jpg')",
    "FFHQ thousands-folders '<N//1000*1000:05d>/<N:05d><ext>' ('69000/69037.png')",
)


def _key(rel: str) -> str:
    """Index key of a relative path: POSIX separators, no leading ``./``, extension lower-cased."""
    rel = rel.replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    stem, ext = posixpath.splitext(rel)
    return stem + ext.lower()


@functools.lru_cache(maxsize=32)
def _norm_exts(extensions: tuple[str, ...]) -> tuple[str, ...]:
    """Lower-cased extensions with a leading dot."""
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def id_candidates(image_id: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[str]:
    """Relative paths (index keys) an id may name, most preferred first."""
    exts = _norm_exts(tuple(extensions))
    rel = image_id.replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    if posixpath.splitext(rel)[1].lower() in exts:
        return [_key(rel)]
    out = [f"{rel}{e}" for e in exts]
    if rel.isdigit():
        n = int(rel)
        out += [f"{n:05d}{e}" for e in exts]
        out += [f"{n}{e}" for e in exts]
        out += [f"{n // 1000 * 1000:05d}/{n:05d}{e}" for e in exts]
    return list(dict.fromkeys(out))


class ImageIdDataset(Dataset):
    """Images under ``root`` addressed by id; items are ``{"image", "id", "path"}``.

    ``ids`` is a list of ids or a split name / split file path (see :func:`read_split`). Each id
    is resolved once, up front, against a single scan of ``root`` using the schemes in
    ``NAMING_SCHEMES``; all unresolved ids are reported in one ``FileNotFoundError``. When an id
    matches several files, the most preferred scheme/extension wins and a warning is issued.

    ``transform`` (PIL RGB image -> tensor) replaces the default ``ToTensor`` + ``[-1, 1]``
    scaling (``resolution`` only applies to the default). With ``skip_bad=True`` an unreadable
    image yields ``None`` (drop it with :func:`collate_skip_none`), a warning naming the file, and
    increments ``num_bad`` / appends to ``bad_paths`` (per worker process when ``num_workers > 0``).
    Otherwise an unreadable image raises ``OSError`` naming the file.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        ids: Sequence[str | int] | str | os.PathLike[str] | None,  # None: every image under root (sorted walk)
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        resolution: int | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        skip_bad: bool = False,
        require_rgb: bool = False,
        min_size: int = 0,
        max_report: int = 20,
    ) -> None:
        self.root = Path(root)
        if isinstance(ids, str | os.PathLike):
            ids = read_split(ids)
        self.ids: list[str] | None = None if ids is None else [str(i) for i in ids]
        self.transform = transform
        self.resolution = resolution
        self.extensions = tuple(extensions)
        self.skip_bad = skip_bad
        self.require_rgb = require_rgb  # a non-RGB file (grayscale, CMYK, RGBA, ...) counts as bad
        self.min_size = min_size  # an image whose shorter side is below this counts as bad
        self.num_bad = 0
        self.bad_paths: list[str] = []
        self.paths: list[Path] = self._resolve(max_report)

    def _scan(self) -> dict[str, str]:
        """One walk of ``root``: index key -> actual relative path for every image file."""
        exts = set(_norm_exts(self.extensions))
        index: dict[str, str] = {}
        seen_dirs: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen_dirs:  # symlink loop or a folder linked twice
                dirnames.clear()
                continue
            seen_dirs.add(real)
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            for name in sorted(filenames):
                stem, ext = os.path.splitext(name)
                ext = ext.lower()
                if ext in exts:
                    index.setdefault(prefix + stem + ext, prefix + name)
        return index

    def _resolve(self, max_report: int) -> list[Path]:
        if not self.root.exists():
            raise FileNotFoundError(f"image root does not exist: {self.root}")
        if not self.root.is_dir():
            raise NotADirectoryError(f"image root is not a directory: {self.root}")
        index = self._scan()
        if self.ids is None:  # every image file, as pSp's make_dataset (its sorted walk); ids = relative paths
            self.ids = sorted(index.values())
            if not self.ids:
                raise FileNotFoundError(f"no image files under {self.root} (extensions {list(self.extensions)})")
        paths: list[Path] = []
        missing: list[str] = []
        ambiguous: list[str] = []
        for image_id in self.ids:
            hits = [index[c] for c in id_candidates(image_id, self.extensions) if c in index]
            if not hits:
                missing.append(image_id)
                continue
            if len(hits) > 1:
                ambiguous.append(f"{image_id} -> {hits}")
            paths.append(self.root / hits[0])
        if missing:
            shown = ", ".join(missing[:max_report]) + (", ..." if len(missing) > max_report else "")
            raise FileNotFoundError(
                f"{len(missing)} of {len(self.ids)} image ids not found under {self.root} "
                f"({len(index)} image files indexed; extensions {list(self.extensions)}). "
                f"Missing (first {min(len(missing), max_report)}): {shown}. "
                f"Naming schemes tried: {'; '.join(NAMING_SCHEMES)}."
            )
        if ambiguous:
            warnings.warn(
                f"{len(ambiguous)} ids match several files under {self.root}; using the first of each: "
                + "; ".join(ambiguous[:5])
                + ("; ..." if len(ambiguous) > 5 else ""),
                stacklevel=3,
            )
        return paths

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, path: Path) -> Image.Image | None:
        try:
            with Image.open(path) as im:
                if self.require_rgb and im.mode != "RGB":
                    raise ValueError(f"not an RGB image (mode {im.mode})")
                if min(im.size) < self.min_size:
                    raise ValueError(f"too small: {im.size[0]}x{im.size[1]} < {self.min_size}")
                return im.convert("RGB")  # convert() forces a full decode inside the try
        except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
            if not self.skip_bad:
                raise OSError(f"cannot use image {path}: {type(e).__name__}: {e}") from e
            self.num_bad += 1
            self.bad_paths.append(str(path))
            warnings.warn(f"skipping image {path}: {type(e).__name__}: {e}", stacklevel=3)
            return None

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        path = self.paths[index]
        image = self._load(path)
        if image is None:
            return None
        tensor = (
            self.transform(image) if self.transform is not None else from_pil(image, self.resolution)
        )
        return {"image": tensor, "id": self.ids[index], "path": str(path)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)}, skip_bad={self.skip_bad})"


def collate_skip_none(batch: Sequence[Any]) -> Any:
    """``default_collate`` after dropping ``None`` items; returns ``None`` if the whole batch was bad."""
    kept = [b for b in batch if b is not None]
    return default_collate(kept) if kept else None
