"""Fixed benchmark splits: plain-text id lists under the repository's ``data_splits/`` folder.

A split file holds one image id (or generator seed) per line. Lines starting with ``#`` are
header comments (provenance and the command that regenerates the file); blank lines are ignored.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "CARS_SPLIT_SIZES",
    "CELEBA_PARTITION",
    "CELEBAHQ_SPLIT_SIZES",
    "cars_ids_by_naming",
    "default_mapping_path",
    "derive_car_ims_splits",
    "derive_cars_splits",
    "derive_celebahq_splits",
    "ids_sha256",
    "read_split",
    "repo_root",
    "shared_dir",
    "split_path",
    "splits_dir",
    "write_split",
]

#: CelebA's official partition as inclusive ranges of the 1-based file number ``NNNNNN.jpg``.
CELEBA_PARTITION: dict[str, tuple[int, int]] = {
    "train": (1, 162770),
    "val": (162771, 182637),
    "test": (182638, 202599),
}

#: Sizes the CelebA-HQ mapping + CelebA partition must yield (pSp / e4e / ReStyle benchmark split).
CELEBAHQ_SPLIT_SIZES: dict[str, int] = {"train": 24183, "val": 2993, "test": 2824}

CELEBAHQ_MAPPING_RELPATH = Path("data") / "celebahq" / "CelebA-HQ-to-CelebA-mapping.txt"

#: Stanford Cars (Krause et al., 3dRR 2013) image counts: cars_train/ (00001.jpg ... 08144.jpg) and cars_test/
#: (00001.jpg ... 08041.jpg), the train / test folders of the pSp / e4e / ReStyle ``cars_encode`` experiments.
CARS_SPLIT_SIZES: dict[str, int] = {"train": 8144, "test": 8041}


def repo_root() -> Path:
    """The repository root (the folder holding ``inversion/`` and ``data_splits/``)."""
    return Path(__file__).resolve().parents[2]


def splits_dir() -> Path:
    """Folder of the committed split files (``INVERSION_SPLITS_DIR`` overrides ``<repo>/data_splits``)."""
    env = os.environ.get("INVERSION_SPLITS_DIR")
    return Path(env) if env else repo_root() / "data_splits"


def shared_dir() -> Path:
    """The ``shared/`` folder next to the repository (``INVERSION_SHARED`` overrides)."""
    env = os.environ.get("INVERSION_SHARED")
    return Path(env) if env else repo_root().parent / "shared"


def default_mapping_path() -> Path:
    """Default location of ``CelebA-HQ-to-CelebA-mapping.txt`` inside ``shared/``."""
    return shared_dir() / CELEBAHQ_MAPPING_RELPATH


def split_path(name: str | os.PathLike[str]) -> Path:
    """Resolve a split name (``"celebahq_test"``) or a path to a split file.

    An existing file, or anything containing a path separator or ending in ``.txt``, is treated
    as a path; otherwise it names ``data_splits/<name>.txt``.
    """
    p = Path(name)
    s = str(name)
    if p.is_file():
        return p
    if s.endswith(".txt") or "/" in s or os.sep in s:
        raise FileNotFoundError(f"split file not found: {p}")
    candidate = splits_dir() / f"{s}.txt"
    if not candidate.is_file():
        available = sorted(q.stem for q in splits_dir().glob("*.txt"))
        raise FileNotFoundError(f"unknown split {s!r}: {candidate} does not exist (available: {available})")
    return candidate


def ids_sha256(ids: Sequence[str]) -> str:
    """SHA-256 of an id list (one per line, in order): which images a result or a prepared copy is of."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def read_split(name_or_path: str | os.PathLike[str]) -> list[str]:
    """Read a split's ids in file order; ``#`` comments and blank lines are skipped.

    Raises ``ValueError`` naming the file and the id when an id occurs twice.
    """
    path = split_path(name_or_path)
    ids: list[str] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line in seen:
                raise ValueError(
                    f"duplicate id {line!r} in split file {path} (lines {seen[line]} and {lineno})"
                )
            seen[line] = lineno
            ids.append(line)
    return ids


def write_split(
    path: str | os.PathLike[str], ids: Iterable[str | int], header_lines: Sequence[str] = ()
) -> Path:
    """Write ``ids`` one per line after ``header_lines`` (each prefixed with ``# `` unless it already is).

    Refuses duplicate ids or ids containing whitespace / starting with ``#``.
    """
    path = Path(path)
    out: list[str] = []
    for h in header_lines:
        for sub in str(h).splitlines() or [""]:
            out.append(sub if sub.startswith("#") else (f"# {sub}" if sub else "#"))
    seen: set[str] = set()
    for i in ids:
        s = str(i)
        if not s or s != s.strip() or any(c.isspace() for c in s) or s.startswith("#"):
            raise ValueError(f"invalid id {s!r} for split file {path}")
        if s in seen:
            raise ValueError(f"duplicate id {s!r} for split file {path}")
        seen.add(s)
        out.append(s)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(out) + "\n")
    return path


def _celeba_partition(file_number: int) -> str:
    for split, (lo, hi) in CELEBA_PARTITION.items():
        if lo <= file_number <= hi:
            return split
    raise ValueError(f"CelebA file number {file_number} is outside the official partition 1..202599")


def derive_celebahq_splits(
    mapping_file: str | os.PathLike[str], check_sizes: bool = True
) -> dict[str, list[str]]:
    """Derive CelebA-HQ train/val/test ids from ``CelebA-HQ-to-CelebA-mapping.txt``.

    Each mapping row is ``idx orig_idx orig_file`` (an optional ``idx orig_idx orig_file`` header
    line is skipped). The CelebA-HQ image ``idx`` goes to the CelebA official partition of
    ``orig_file`` (``NNNNNN.jpg``, 1-based). Ids are unpadded decimal strings sorted ascending.
    With ``check_sizes`` the result must be exactly 24,183 / 2,993 / 2,824 covering 0..29999.
    """
    path = Path(mapping_file)
    splits: dict[str, list[int]] = {name: [] for name in CELEBA_PARTITION}
    seen: set[int] = set()
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            parts = raw.split()
            if not parts or parts[0].startswith("#"):
                continue
            if not parts[0].isdigit():
                if lineno == 1:  # header row such as "idx orig_idx orig_file"
                    continue
                raise ValueError(f"{path}:{lineno}: cannot parse mapping row {raw.rstrip()!r}")
            if len(parts) < 3:
                raise ValueError(f"{path}:{lineno}: expected 'idx orig_idx orig_file', got {raw.rstrip()!r}")
            idx, orig_idx = int(parts[0]), int(parts[1])
            stem = Path(parts[2]).stem
            if not stem.isdigit():
                raise ValueError(f"{path}:{lineno}: unexpected CelebA file name {parts[2]!r}")
            file_number = int(stem)
            if orig_idx + 1 != file_number:
                raise ValueError(
                    f"{path}:{lineno}: orig_idx {orig_idx} does not match orig_file {parts[2]!r}"
                )
            if idx in seen:
                raise ValueError(f"{path}:{lineno}: duplicate CelebA-HQ idx {idx}")
            seen.add(idx)
            splits[_celeba_partition(file_number)].append(idx)
    result = {name: [str(i) for i in sorted(v)] for name, v in splits.items()}
    if check_sizes:
        sizes = {k: len(v) for k, v in result.items()}
        if sizes != CELEBAHQ_SPLIT_SIZES or seen != set(range(30000)):
            raise ValueError(
                f"{path}: derived CelebA-HQ split sizes {sizes} (covering {len(seen)} ids) differ from "
                f"the expected {CELEBAHQ_SPLIT_SIZES} over 0..29999"
            )
    return result


def cars_ids_by_naming(split: str) -> list[str]:
    """Stanford Cars ``cars_<split>/`` ids by the documented naming: ``00001`` ... ``08144`` (train) or ``08041``
    (test), the 5-digit file stems, ascending (= the devkit annotation order: annotation M is image M)."""
    if split not in CARS_SPLIT_SIZES:
        raise ValueError(f"Stanford Cars split must be one of {sorted(CARS_SPLIT_SIZES)}, got {split!r}")
    return [f"{i:05d}" for i in range(1, CARS_SPLIT_SIZES[split] + 1)]


def _mat_annotations(path: str | os.PathLike[str], fields: Sequence[str]) -> list[dict]:
    """The ``annotations`` struct array of a Stanford Cars ``.mat`` file as a list of dicts (``scipy.io.loadmat``),
    each holding ``fields``."""
    try:
        from scipy.io import loadmat
    except ImportError as err:  # pragma: no cover - scipy comes with lpips
        raise ImportError(f"reading {path} needs scipy (pip install scipy)") from err
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Stanford Cars annotation file not found: {path}")
    rows = loadmat(str(path), simplify_cells=True).get("annotations")
    rows = [rows] if isinstance(rows, dict) else list(rows.ravel()) if hasattr(rows, "ravel") else rows
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: expected an 'annotations' struct array (Stanford Cars devkit / cars_annos.mat)")
    missing = [f for f in fields if f not in rows[0]]
    if missing:
        raise ValueError(f"{path}: the annotations have fields {sorted(rows[0])}, not {missing}")
    return rows


def _stem_id(name: str, path: Path, index: int, digits: int) -> str:
    stem = Path(str(name)).stem
    if not (stem.isdigit() and len(stem) == digits and Path(str(name)).suffix.lower() == ".jpg"):
        raise ValueError(f"{path}: annotation {index + 1} names {name!r}, not a {digits}-digit .jpg file")
    return stem


def _check_ids(ids: list[str], path: Path, expected: int | None) -> list[str]:
    seen: set[str] = set()
    for image_id in ids:
        if image_id in seen:
            raise ValueError(f"{path}: image {image_id!r} is annotated twice")
        seen.add(image_id)
    if expected is not None and len(ids) != expected:
        raise ValueError(f"{path}: {len(ids)} images, expected {expected}")
    return ids


def derive_cars_splits(
    annotations: dict[str, str | os.PathLike[str]] | None = None,  # {"train": cars_train_annos.mat, "test": ...}
    check_sizes: bool = True,  # The result must have 8,144 / 8,041 ids.
) -> dict[str, list[str]]:
    """Stanford Cars ``cars_train/`` and ``cars_test/`` ids, ``{"train": [...], "test": [...]}``, in annotation order.

    A split given in ``annotations`` is read from that devkit file (``cars_train_annos.mat``, ``cars_test_annos.mat``
    or ``cars_test_annos_withlabels.mat``): the stems of its ``fname`` fields (``00001.jpg`` -> ``00001``), in file
    order. The other splits follow the documented naming (:func:`cars_ids_by_naming`), which the devkit matches."""
    unknown = set(annotations or {}) - set(CARS_SPLIT_SIZES)
    if unknown:
        raise ValueError(f"unknown Stanford Cars splits {sorted(unknown)}; use {sorted(CARS_SPLIT_SIZES)}")
    out = {}
    for split in CARS_SPLIT_SIZES:
        source = (annotations or {}).get(split)
        if source is None:
            out[split] = cars_ids_by_naming(split)
            continue
        path = Path(source)
        rows = _mat_annotations(path, ["fname"])
        ids = [_stem_id(r["fname"], path, i, 5) for i, r in enumerate(rows)]
        out[split] = _check_ids(ids, path, CARS_SPLIT_SIZES[split] if check_sizes else None)
    return out


def derive_car_ims_splits(cars_annos: str | os.PathLike[str], check_sizes: bool = True) -> dict[str, list[str]]:
    """Train / test ids of the *other* Stanford Cars layout, ``car_ims/000001.jpg`` ... ``016185.jpg`` (car_ims.tgz)
    with ``cars_annos.mat``: the 6-digit stems of ``relative_im_path``, split by the ``test`` flag, in file order.

    These images are the same 8,144 + 8,041 but numbered differently (the file carries no mapping to the
    ``cars_train/`` / ``cars_test/`` names), so their ids are not those of :func:`derive_cars_splits`."""
    path = Path(cars_annos)
    out: dict[str, list[str]] = {"train": [], "test": []}
    for i, row in enumerate(_mat_annotations(path, ["relative_im_path", "test"])):
        flag = int(row["test"])
        if flag not in (0, 1):
            raise ValueError(f"{path}: annotation {i + 1} has test flag {row['test']!r}, not 0 / 1")
        out["test" if flag else "train"].append(_stem_id(row["relative_im_path"], path, i, 6))
    _check_ids(out["train"] + out["test"], path, None)
    for split, ids in out.items():
        _check_ids(ids, path, CARS_SPLIT_SIZES[split] if check_sizes else None)
    return out
