"""(source, target) pairs for pSp's image-to-image tasks: frontalization, sketch / segmentation -> face,
super-resolution (pixel2style2pixel ``5cfff38``, ``datasets/images_dataset.py::ImagesDataset``).

Pairing. pSp lists the source and the target folders (``sorted(make_dataset(root))``, recursive) and pairs the two
lists *by index*; the dataset's length is the number of sources. That is only right when both folders hold the same
images under names that sort alike: with CelebA-HQ's unpadded names the orders differ (``1.jpg`` < ``10.jpg`` but
``10_edges.jpg`` < ``1_edges.jpg``). Here the target is resolved by id exactly like :class:`ImageIdDataset` (a split
file of ids, FFHQ / CelebA-HQ naming schemes) and each source is found *by name*: ``source_name`` is a format string
of the target's ``{id}``, file ``{stem}`` and ``{rel}`` (root-relative path without extension), e.g.
``"{stem}_edges"`` for the sketches of pSp's ``scripts/generate_sketch_data.py``, ``"{rel}"`` (the default: same name,
any image extension) for segmentation maps; the extension may be given (``"{stem}_edges.jpg"``). Every missing source
is reported in one ``FileNotFoundError`` before training. Where pSp's index pairing is right, both give the same pairs.

Without ``source_root`` / ``source_name`` the source comes from the target's own file, read once (frontalization,
super-resolution: pSp's source and target roots are the same folder). Without ``source_transform`` the source *is*
the transformed target tensor (pSp's ``transform_source=None``: inversion, same flip).

Flips: an independent flip is a ``RandomHorizontalFlip`` in ``transform`` and another in ``source_transform``
(frontalization); a shared flip is ``joint_transform`` (``PairedHorizontalFlip``), applied to the two PIL images
before the per-side transforms.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..imageio import from_pil
from .folder import IMAGE_EXTENSIONS, ImageIdDataset

__all__ = ["SOURCE_MODES", "PairedDataset"]

#: How a source file is read: ``RGB`` / ``L`` (``convert``; pSp: RGB when ``label_nc == 0``, else L) or ``labels``
#: (class indices: ``L`` / ``I`` files as they are, a palette (``P``) file's indices, anything else ``convert('L')``).
SOURCE_MODES = ("RGB", "L", "labels")
_NAME_FIELDS = ("id", "stem", "rel")


class PairedDataset(ImageIdDataset):
    """Targets under ``root`` addressed by id (:class:`ImageIdDataset`) with a source per target; items are
    ``{"image": target, "source": source, "id", "path", "source_path"}``.

    ``transform`` turns the target (PIL RGB) into a tensor (default: ``[3, H, W]`` in [-1, 1]);
    ``source_transform`` the source (PIL, ``source_mode``) into the encoder's input, e.g. ``ToOneHot(19)`` or
    ``ToGrayTensor``; ``joint_transform(target, source) -> (target, source)`` runs on the two PIL images first. Bad
    files, target or source, follow ``skip_bad`` exactly as :class:`ImageIdDataset` (``None`` items, counted in
    ``num_bad`` / ``bad_paths``, a warning naming the file; otherwise an ``OSError`` naming it); ``require_rgb`` and
    ``min_size`` apply to targets. An error of ``source_transform`` (say a class index ``>= label_nc``) is a
    ``ValueError`` naming the source file, never skipped: it is a configuration error, not a bad file.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        ids: Sequence[str | int] | str | os.PathLike[str],
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        source_root: str | os.PathLike[str] | None = None,  # None: root
        source_name: str | None = None,  # e.g. "{stem}_edges"; None: "{rel}" with a source_root, else the target file
        source_transform: Callable[[Image.Image], Any] | None = None,  # None: the source is the target tensor
        source_mode: str = "RGB",
        joint_transform: Callable[[Image.Image, Image.Image], tuple[Image.Image, Image.Image]] | None = None,
        source_extensions: Sequence[str] | None = None,  # None: extensions
        resolution: int | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        skip_bad: bool = False,
        require_rgb: bool = False,
        min_size: int = 0,
        max_report: int = 20,
    ) -> None:
        if source_mode not in SOURCE_MODES:
            raise ValueError(f"source_mode {source_mode!r}; choose one of {SOURCE_MODES}")
        separate = source_root is not None or source_name is not None
        if separate and source_transform is None:
            raise ValueError("a source read from its own file (source_root / source_name) needs a source_transform; "
                             "without one the source is the transformed target")
        if source_name is not None:
            try:
                source_name.format(**dict.fromkeys(_NAME_FIELDS, "x"))
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(f"source_name {source_name!r} may only use the fields "
                                 f"{', '.join('{' + f + '}' for f in _NAME_FIELDS)} ({err!r})") from None
        super().__init__(root, ids, transform, resolution=resolution, extensions=extensions, skip_bad=skip_bad,
                         require_rgb=require_rgb, min_size=min_size, max_report=max_report)
        self.source_root = self.root if source_root is None else Path(source_root)
        self.source_name = source_name if source_name is not None else ("{rel}" if separate else None)
        self.source_transform = source_transform
        self.source_mode = source_mode
        self.joint_transform = joint_transform
        self.source_extensions = tuple(source_extensions) if source_extensions is not None else self.extensions
        self.source_paths: list[Path] = self._resolve_sources(max_report) if separate else list(self.paths)

    def source_names(self) -> list[str]:
        """The name ``source_name`` gives each target (what is looked up under ``source_root``)."""
        names = []
        for image_id, path in zip(self.ids, self.paths, strict=True):
            rel = path.relative_to(self.root).with_suffix("").as_posix()
            names.append(self.source_name.format(id=image_id, stem=path.stem, rel=rel))
        return names

    def _resolve_sources(self, max_report: int) -> list[Path]:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                found = ImageIdDataset(self.source_root, self.source_names(), extensions=self.source_extensions,
                                       max_report=max_report)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"paired dataset: source files missing (source_name={self.source_name!r}, "
                                    f"source_root={self.source_root}; targets under {self.root}): {err}") from None
        for w in caught:
            warnings.warn(f"paired dataset sources: {w.message}", stacklevel=4)
        return found.paths

    # ------------------------------------------------------------------------------------------ loading
    def _bad(self, path: Path, err: Exception) -> None:
        if not self.skip_bad:
            raise OSError(f"cannot use image {path}: {type(err).__name__}: {err}") from err
        self.num_bad += 1
        self.bad_paths.append(str(path))
        warnings.warn(f"skipping image {path}: {type(err).__name__}: {err}", stacklevel=4)

    def _as_source(self, im: Image.Image) -> Image.Image:
        if self.source_mode == "labels":
            if im.mode == "P":
                return Image.fromarray(np.asarray(im))
            if im.mode in ("L", "I", "I;16"):
                im.load()
                return im.copy()
            return im.convert("L")
        return im.convert(self.source_mode)  # convert() forces a full decode

    def _load_source(self, path: Path) -> Image.Image | None:
        try:
            with Image.open(path) as im:
                return self._as_source(im)
        except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
            self._bad(path, e)
            return None

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        path, source_path = self.paths[index], self.source_paths[index]
        target = self._load(path)
        if target is None:
            return None
        if self.source_transform is None:
            source = None
        elif source_path == path:
            source = self._as_source(target)
        else:
            source = self._load_source(source_path)
            if source is None:
                return None
        if self.joint_transform is not None:
            target, source = self.joint_transform(target, target if source is None else source)
        image = self.transform(target) if self.transform is not None else from_pil(target, self.resolution)
        if self.source_transform is None:
            encoder_input = image
        else:
            try:
                encoder_input = self.source_transform(source)
            except ValueError as err:
                raise ValueError(f"source {source_path} (target id {self.ids[index]}): {err}") from err
        return {"image": image, "source": encoder_input, "id": self.ids[index], "path": str(path),
                "source_path": str(source_path)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, source_root={str(self.source_root)!r}, "
                f"source_name={self.source_name!r}, n={len(self)}, skip_bad={self.skip_bad})")
