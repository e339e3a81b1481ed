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
    "CELEBA_PARTITION",
    "CELEBAHQ_SPLIT_SIZES",
    "default_mapping_path",
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
