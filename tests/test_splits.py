"""The committed benchmark split files: counts, disjointness, coverage and reproducible derivation."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from inversion.data.splits import (
    CELEBAHQ_SPLIT_SIZES,
    derive_celebahq_splits,
    read_split,
    split_path,
    write_split,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INVERSION_SHARED", REPO.parent / "shared"))
MAPPING = SHARED / "data" / "celebahq" / "CelebA-HQ-to-CelebA-mapping.txt"
needs_mapping = pytest.mark.skipif(
    not MAPPING.is_file(), reason=f"CelebA-HQ mapping not available at {MAPPING} (no ../shared checkout)"
)

EXPECTED_COUNTS = {
    "ffhq_all": 70000,
    "ffhq_train": 60000,
    "ffhq_val": 10000,
    "celebahq_train": 24183,
    "celebahq_val": 2993,
    "celebahq_test": 2824,
    "demo_train": 256,
    "demo_val": 16,
    "smoke": 4,
    "cars_train": 8144,
    "cars_test": 8041,
}


@pytest.mark.parametrize("name, count", sorted(EXPECTED_COUNTS.items()))
def test_split_counts_and_headers(name: str, count: int) -> None:
    path = split_path(name)
    assert path == REPO / "data_splits" / f"{name}.txt"
    ids = read_split(name)  # raises on duplicates
    assert len(ids) == count
    assert len(set(ids)) == count
    lines = path.read_text(encoding="utf-8").splitlines()
    header = [ln for ln in lines if ln.startswith("#")]
    assert lines[0].startswith("#") and header, "split files start with a provenance header"
    command = "scripts/make_cars_splits.py" if name.startswith("cars_") else "scripts/make_splits.py"
    assert any(command in ln for ln in header), "header names the regenerating command"
    assert all(ln.strip() and not ln[0].isspace() for ln in lines), "no blank or indented lines"


def test_all_split_files_are_tested() -> None:
    assert {p.stem for p in (REPO / "data_splits").glob("*.txt")} == set(EXPECTED_COUNTS)


def test_ffhq_splits_partition_0_to_69999() -> None:
    train, val = read_split("ffhq_train"), read_split("ffhq_val")
    assert all(len(i) == 5 and i.isdigit() for i in train + val), "FFHQ ids are 5-digit zero-padded"
    assert train == [f"{i:05d}" for i in range(60000)]
    assert val == [f"{i:05d}" for i in range(60000, 70000)]
    assert not set(train) & set(val)


def test_celebahq_splits_partition_0_to_29999() -> None:
    splits = {s: read_split(f"celebahq_{s}") for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in splits.items()} == CELEBAHQ_SPLIT_SIZES
    for ids in splits.values():
        assert all(i.isdigit() and str(int(i)) == i for i in ids), "CelebA-HQ ids are unpadded integers"
        assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    sets = [set(v) for v in splits.values()]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert set().union(*sets) == {str(i) for i in range(30000)}


def test_demo_splits_are_seeds() -> None:
    assert read_split("demo_train") == [str(i) for i in range(256)]
    assert read_split("demo_val") == [str(i) for i in range(1000, 1016)]
    assert set(read_split("smoke")) <= set(read_split("demo_val"))
    assert not set(read_split("demo_train")) & set(read_split("demo_val"))
    for name in ("demo_train", "demo_val", "smoke"):
        header = [
            ln for ln in split_path(name).read_text(encoding="utf-8").splitlines() if ln.startswith("#")
        ]
        assert any("generator seeds" in ln.lower() for ln in header), f"{name} header says these are seeds"


@needs_mapping
def test_celebahq_derivation_reproduces_committed_files() -> None:
    derived = derive_celebahq_splits(MAPPING)
    for split, ids in derived.items():
        assert ids == read_split(f"celebahq_{split}"), f"celebahq_{split}.txt differs from the derivation"


@needs_mapping
def test_make_splits_check_passes(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("make_splits", REPO / "scripts" / "make_splits.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--mapping", str(MAPPING), "--check"]) == 0, capsys.readouterr().err


def _toy_mapping(tmp_path: Path, rows: list[tuple[int, int]], header: bool = False) -> Path:
    lines = ["idx orig_idx orig_file"] if header else []
    lines += [f"{idx:<10d} {n - 1:<10d} {n:06d}.jpg" for idx, n in rows]
    path = tmp_path / "mapping.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_derive_celebahq_splits_on_toy_mapping(tmp_path: Path) -> None:
    rows = [(3, 1), (0, 162770), (2, 162771), (5, 182637), (1, 182638), (4, 202599)]
    for header in (False, True):
        got = derive_celebahq_splits(_toy_mapping(tmp_path, rows, header), check_sizes=False)
        assert got == {"train": ["0", "3"], "val": ["2", "5"], "test": ["1", "4"]}
    with pytest.raises(ValueError, match="split sizes"):
        derive_celebahq_splits(_toy_mapping(tmp_path, rows))


def test_derive_rejects_bad_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate CelebA-HQ idx 0"):
        derive_celebahq_splits(_toy_mapping(tmp_path, [(0, 1), (0, 2)]), check_sizes=False)
    bad = tmp_path / "bad.txt"
    bad.write_text("0 5 000001.jpg\n")
    with pytest.raises(ValueError, match="does not match"):
        derive_celebahq_splits(bad, check_sizes=False)
    bad.write_text("0 202599 202600.jpg\n")
    with pytest.raises(ValueError, match="outside the official partition"):
        derive_celebahq_splits(bad, check_sizes=False)


def test_read_split_skips_comments_and_rejects_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "my_split.txt"
    path.write_text("# header\n\n  a \n# another comment\nb\n\n")
    assert read_split(path) == ["a", "b"]
    assert read_split(str(path)) == ["a", "b"]
    path.write_text("# header\n7\n8\n7\n")
    with pytest.raises(ValueError) as exc:
        read_split(path)
    assert str(path) in str(exc.value) and "'7'" in str(exc.value)


def test_write_split_roundtrip(tmp_path: Path) -> None:
    path = write_split(tmp_path / "sub" / "x.txt", [3, "1", 2], ["line one", "# already commented", ""])
    text = path.read_text()
    assert text.splitlines()[:3] == ["# line one", "# already commented", "#"]
    assert read_split(path) == ["3", "1", "2"]
    with pytest.raises(ValueError, match="duplicate"):
        write_split(tmp_path / "y.txt", ["1", "1"])
    with pytest.raises(ValueError, match="invalid id"):
        write_split(tmp_path / "y.txt", ["a b"])


def test_unknown_split_name() -> None:
    with pytest.raises(FileNotFoundError, match="unknown split 'no_such_split'"):
        read_split("no_such_split")
    with pytest.raises(FileNotFoundError):
        read_split("missing/dir/x.txt")
