"""The Stanford Cars split files (data_splits/cars_{train,test}.txt): re-derived by scripts/make_cars_splits.py from
the documented naming and from devkit-style annotation files, with the official counts, order and unique ids."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from inversion.data.splits import (
    CARS_SPLIT_SIZES,
    cars_ids_by_naming,
    derive_car_ims_splits,
    derive_cars_splits,
    read_split,
)

REPO = Path(__file__).resolve().parents[1]


def make_cars_splits():
    spec = importlib.util.spec_from_file_location("make_cars_splits", REPO / "scripts" / "make_cars_splits.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def savemat_annotations(path: Path, rows: list[dict]) -> Path:
    """A ``.mat`` file with an ``annotations`` 1 x N struct array, as the Stanford Cars files hold."""
    np = pytest.importorskip("numpy")
    scipy_io = pytest.importorskip("scipy.io")
    fields = list(rows[0])
    table = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for f in fields:
            table[0, i][f] = row[f]
    scipy_io.savemat(str(path), {"annotations": table})
    return path


def devkit_rows(names: list[str], with_class: bool = True) -> list[dict]:
    return [{"bbox_x1": 10 + i % 7, "bbox_y1": 5, "bbox_x2": 200, "bbox_y2": 150,
             **({"class": 1 + i % 196} if with_class else {}), "fname": name} for i, name in enumerate(names)]


def test_committed_files_have_the_official_counts_order_and_unique_ids():
    assert CARS_SPLIT_SIZES == {"train": 8144, "test": 8041}
    for split, count in CARS_SPLIT_SIZES.items():
        ids = read_split(f"cars_{split}")  # raises on a duplicate id
        assert len(ids) == count == len(set(ids))
        assert ids == [f"{i:05d}" for i in range(1, count + 1)]  # 00001.jpg ... in annotation order
        assert ids == cars_ids_by_naming(split)
    assert make_cars_splits().main(["--check"]) == 0  # the script re-derives exactly the committed files


def test_rederived_files_equal_the_committed_ones(tmp_path):
    assert make_cars_splits().main(["--out", str(tmp_path)]) == 0
    for split in CARS_SPLIT_SIZES:
        name = f"cars_{split}.txt"
        assert (tmp_path / name).read_text() == (REPO / "data_splits" / name).read_text()
    (tmp_path / "cars_test.txt").write_text("# stale\n00001\n")
    assert make_cars_splits().main(["--check", "--out", str(tmp_path)]) == 1


def test_devkit_annotation_files_give_the_same_ids_in_the_same_order(tmp_path):
    train = savemat_annotations(tmp_path / "cars_train_annos.mat",
                                devkit_rows([f"{i:05d}.jpg" for i in range(1, 8145)]))
    test = savemat_annotations(tmp_path / "cars_test_annos.mat",  # the test file has no class
                               devkit_rows([f"{i:05d}.jpg" for i in range(1, 8042)], with_class=False))
    derived = derive_cars_splits({"train": train, "test": test})
    assert derived == {split: read_split(f"cars_{split}") for split in CARS_SPLIT_SIZES}
    script = make_cars_splits()
    assert script.main(["--train-annos", str(train), "--test-annos", str(test), "--check"]) == 0
    assert script.main(["--train-annos", str(train), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "cars_train.txt").read_text() == (REPO / "data_splits" / "cars_train.txt").read_text()

    # the order is the file's: a shuffled annotation file gives its own order, which --check reports
    shuffled = savemat_annotations(tmp_path / "shuffled.mat", devkit_rows(["00002.jpg", "00001.jpg", "00003.jpg"]))
    assert derive_cars_splits({"train": shuffled}, check_sizes=False)["train"] == ["00002", "00001", "00003"]
    with pytest.raises(ValueError, match="3 images, expected 8144"):
        derive_cars_splits({"train": shuffled})
    for rows, match in [(devkit_rows(["00001.jpg", "00001.jpg"]), "annotated twice"),
                        (devkit_rows(["car_0001.png"]), "not a 5-digit .jpg")]:
        with pytest.raises(ValueError, match=match):
            derive_cars_splits({"train": savemat_annotations(tmp_path / "bad.mat", rows)}, check_sizes=False)
    with pytest.raises(ValueError, match="not \\['fname'\\]"):
        derive_cars_splits({"test": savemat_annotations(tmp_path / "other.mat", [{"relative_im_path": "x"}])})
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        derive_cars_splits({"test": tmp_path / "missing.mat"})


def test_cars_annos_mat_gives_the_car_ims_layout_under_other_names(tmp_path):
    flags = [0] * 8144 + [1] * 8041  # the official counts (checked)
    order = list(range(1, 16186))
    order[0], order[9000] = order[9000], order[0]  # file order, not the numbering
    rows = [{"relative_im_path": f"car_ims/{n:06d}.jpg", "bbox_x1": 1, "bbox_y1": 1, "bbox_x2": 9, "bbox_y2": 9,
             "class": 1, "test": flags[i]} for i, n in enumerate(order)]
    annos = savemat_annotations(tmp_path / "cars_annos.mat", rows)
    got = derive_car_ims_splits(annos)
    assert {k: len(v) for k, v in got.items()} == CARS_SPLIT_SIZES
    assert got["train"][0] == "009001" and got["test"][9000 - 8144] == "000001"
    assert not set(got["train"]) & set(got["test"])
    script = make_cars_splits()
    with pytest.raises(SystemExit):  # never into data_splits/: those ids are not cars_train/ / cars_test/ names
        script.main(["--cars-annos", str(annos)])
    assert script.main(["--cars-annos", str(annos), "--out", str(tmp_path / "car_ims")]) == 0
    assert read_split(tmp_path / "car_ims" / "car_ims_test.txt") == got["test"]
    assert not (tmp_path / "car_ims" / "cars_train.txt").exists()
