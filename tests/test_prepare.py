"""python -m inversion prepare and PreparedDataset: a resized, decode-free copy of a split that gives the
same tensors as the on-the-fly pSp pipeline, resumes after an interruption, and skips unusable images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image
from torch.utils.data import DataLoader

from inversion.data import ImageIdDataset, PreparedDataset, prepare_dataset
from inversion.data.prepare import DONE, TODO

REPO = Path(__file__).resolve().parents[1]
SIZE = 48


@pytest.fixture
def photos(tmp_path) -> tuple[Path, Path]:
    """Five images of different sizes and formats (one grayscale), a corrupt one, and a split file."""
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(120, 120), (200, 150), (97, 131), (64, 64), (150, 150)]):
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img = Image.fromarray(array)
        if i == 2:
            img.convert("L").save(root / f"{i:05d}.png")
        elif i == 3:
            img.save(root / f"{i:05d}.jpg", quality=90)
        else:
            img.save(root / f"{i:05d}.png")
    (root / "00005.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    split = tmp_path / "split.txt"
    split.write_text("# test split\n" + "\n".join(str(i) for i in range(6)) + "\n")
    return root, split


def _pipeline():
    """The real conf/data/ffhq.yaml validation transform (pSp's) at SIZE px."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train",
                      overrides=["data=ffhq", f"data.val.transform.transforms.0.size=[{SIZE},{SIZE}]"])
    return instantiate(cfg.data.val.transform)


def test_prepared_rows_equal_the_on_the_fly_pipeline_bit_for_bit(tmp_path, photos):
    root, split = photos
    with pytest.warns(UserWarning, match="00005.png"):
        meta = prepare_dataset(root, split, tmp_path / "prep", size=SIZE, num_workers=0, progress=False)
    assert meta["num_written"] == 5 and meta["num_bad"] == 1 and list(meta["bad"]) == ["5"]
    with pytest.warns(UserWarning, match="1 unusable"):
        ds = PreparedDataset(tmp_path / "prep")
    assert len(ds) == 5 and ds.ids == ["0", "1", "2", "3", "4"]
    reference = ImageIdDataset(root, ["0", "1", "2", "3", "4"], transform=_pipeline())
    for i in range(5):
        assert torch.equal(ds[i]["image"], reference[i]["image"]), i  # Resize -> ToTensor -> Normalize
        assert ds[i]["image"].shape == (3, SIZE, SIZE)
    with pytest.warns(UserWarning, match="1 unusable"):
        flipped = PreparedDataset(tmp_path / "prep", hflip=1.0, ids=["3"])
    assert torch.equal(flipped[0]["image"], reference[3]["image"].flip(-1))
    with pytest.raises(FileNotFoundError, match="not prepared"), pytest.warns(UserWarning):
        PreparedDataset(tmp_path / "prep", ids=["5"])


def test_prepare_resumes_and_refuses_other_settings(tmp_path, photos):
    root, split = photos
    out = tmp_path / "prep"
    with pytest.warns(UserWarning):
        prepare_dataset(root, split, out, size=SIZE, num_workers=0, progress=False)
    full = np.load(out / "images.npy").copy()
    # an interruption after the first two rows: later rows were never written
    status = np.load(out / "status.npy")
    status[2:] = TODO
    np.save(out / "status.npy", status)
    images = np.load(out / "images.npy", mmap_mode="r+")
    images[2:] = 0
    images.flush()
    del images
    with pytest.warns(UserWarning, match="not written yet"):
        assert len(PreparedDataset(out)) == 2
    meta = prepare_dataset(root, split, out, size=SIZE, num_workers=2, progress=False)  # with workers, too
    assert meta["num_written"] == 5 and np.array_equal(np.load(out / "images.npy"), full)
    assert (np.load(out / "status.npy")[:5] == DONE).all()
    with pytest.raises(ValueError, match="other settings"):
        prepare_dataset(root, split, out, size=SIZE + 16, num_workers=0, progress=False)


def test_loader_with_workers_and_the_training_config(tmp_path, photos):
    root, split = photos
    with pytest.warns(UserWarning):
        prepare_dataset(root, split, tmp_path / "prep", size=SIZE, num_workers=0, progress=False)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=psp_ffhq", "data=ffhq_prepared",
                                                      f"paths.prepared_train={tmp_path / 'prep'}",
                                                      f"paths.prepared_val={tmp_path / 'prep'}"])
    with pytest.warns(UserWarning):
        train_set = instantiate(cfg.data.train)
    assert isinstance(train_set, PreparedDataset) and train_set.hflip == 0.5
    batches = list(DataLoader(train_set, batch_size=2, num_workers=2))
    assert sum(len(b["id"]) for b in batches) == 5 and batches[0]["image"].shape == (2, 3, SIZE, SIZE)


def test_prepare_cli(tmp_path, photos):
    root, split = photos
    out = tmp_path / "prep"
    r = subprocess.run([sys.executable, "-m", "inversion", "prepare", "--root", str(root), "--split", str(split),
                        "--out", str(out), "--size", str(SIZE), "--workers", "0", "--no-progress"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "prepared 5 of 6 images" in r.stderr and "1 unusable" in r.stderr
    assert json.loads((out / "meta.json").read_text())["size"] == SIZE
    r = subprocess.run([sys.executable, "-m", "inversion", "prepare", "--root", str(tmp_path / "nope"),
                        "--split", str(split), "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "nope" in r.stderr
