"""ImageIdDataset: id resolution under common naming schemes, missing-id reporting, bad files."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from inversion.data import ImageIdDataset, collate_skip_none, read_split
from inversion.data.folder import id_candidates

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INVERSION_SHARED", REPO.parent / "shared"))


def _img(path: Path, size: int = 8, color: tuple[int, int, int] = (255, 0, 0), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (size, size), color)
    if mode != "RGB":
        im = im.convert(mode)
    im.save(path)
    return path


def _check_item(item: dict, image_id: str, path: Path, size: int = 8) -> None:
    assert item["id"] == image_id
    assert Path(item["path"]) == path
    x = item["image"]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    assert x.shape == (3, size, size)
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_padded_png(tmp_path: Path) -> None:
    paths = [_img(tmp_path / f"{i:05d}.png") for i in range(3)]
    for ids in (["00000", "00001", "00002"], ["0", "1", "2"], [0, 1, 2]):
        ds = ImageIdDataset(tmp_path, ids)
        assert ds.paths == paths
        _check_item(ds[1], str(ids[1]), paths[1])


def test_unpadded_jpg_and_png(tmp_path: Path) -> None:
    a = _img(tmp_path / "0.jpg")
    b = _img(tmp_path / "17.png")
    c = _img(tmp_path / "29999.jpg")
    ds = ImageIdDataset(tmp_path, ["0", "17", "29999"])
    assert ds.paths == [a, b, c]
    ds = ImageIdDataset(tmp_path, ["00000", "00017"])  # padded ids find unpadded files too
    assert ds.paths == [a, b]
    _check_item(ds[0], "00000", a)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".webp", ".JPG"])
def test_padded_any_extension(tmp_path: Path, ext: str) -> None:
    p = _img(tmp_path / f"00042{ext}")
    ds = ImageIdDataset(tmp_path, ["42"])
    assert ds.paths == [p]
    _check_item(ds[0], "42", p)


def test_ffhq_nested_thousands_folders(tmp_path: Path) -> None:
    p0 = _img(tmp_path / "00000" / "00000.png")
    p1 = _img(tmp_path / "00000" / "00999.png")
    p2 = _img(tmp_path / "69000" / "69037.png")
    ds = ImageIdDataset(tmp_path, ["00000", "00999", "69037"])
    assert ds.paths == [p0, p1, p2]
    _check_item(ds[2], "69037", p2)


def test_exact_relative_path_and_named_ids(tmp_path: Path) -> None:
    p = _img(tmp_path / "sub" / "face_a.jpeg")
    q = _img(tmp_path / "portrait.webp")
    ds = ImageIdDataset(tmp_path, ["sub/face_a.jpeg", "portrait"])
    assert ds.paths == [p, q]


def test_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    _img(tmp_path / "0.png", mode="L")
    _img(tmp_path / "1.png", mode="RGBA", color=(0, 0, 0))
    ds = ImageIdDataset(tmp_path, ["0", "1"])
    gray = ds[0]["image"]
    assert gray.shape == (3, 8, 8)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert torch.all(ds[1]["image"] == -1.0)  # black RGBA -> RGB -> -1


def test_value_range_is_minus1_to_1(tmp_path: Path) -> None:
    _img(tmp_path / "0.png", color=(0, 255, 0))
    x = ImageIdDataset(tmp_path, ["0"])[0]["image"]
    assert torch.allclose(x[0], torch.full((8, 8), -1.0))
    assert torch.allclose(x[1], torch.full((8, 8), 1.0))


def test_missing_ids_reported_all_at_once(tmp_path: Path) -> None:
    _img(tmp_path / "00001.png")
    missing = ["00000", "00002", "123", "not_here", "x/y.png"]
    with pytest.raises(FileNotFoundError) as exc:
        ImageIdDataset(tmp_path, ["00001", *missing])
    msg = str(exc.value)
    assert f"{len(missing)} of {len(missing) + 1}" in msg
    assert str(tmp_path) in msg
    for image_id in missing:
        assert image_id in msg
    assert "69000/69037.png" in msg  # the naming schemes tried are listed


def test_missing_report_is_truncated(tmp_path: Path) -> None:
    ids = [f"{i:05d}" for i in range(100)]
    with pytest.raises(FileNotFoundError) as exc:
        ImageIdDataset(tmp_path, ids)
    msg = str(exc.value)
    assert "100 of 100" in msg and "00019" in msg and "00020" not in msg and "..." in msg


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageIdDataset(tmp_path / "nope", ["0"])


def test_single_directory_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(50):
        _img(tmp_path / f"{i // 10 * 1000:05d}" / f"{i // 10 * 1000 + i:05d}.png", size=2)
    walks: list = []
    probes: list = []
    real_walk = os.walk
    monkeypatch.setattr(os, "walk", lambda *a, **k: walks.append(a) or real_walk(*a, **k))
    for name in ("exists", "is_file", "is_dir", "stat"):
        real = getattr(Path, name)
        spy = lambda self, *a, _r=real, **k: probes.append(self) or _r(self, *a, **k)
        monkeypatch.setattr(Path, name, spy)
    real_isfile, real_exists = os.path.isfile, os.path.exists
    monkeypatch.setattr(os.path, "isfile", lambda p: probes.append(p) or real_isfile(p))
    monkeypatch.setattr(os.path, "exists", lambda p: probes.append(p) or real_exists(p))
    ds = ImageIdDataset(tmp_path, [f"{i // 10 * 1000 + i:05d}" for i in range(50)])
    assert len(ds) == 50 and len(walks) == 1
    assert tmp_path in probes, "the spies are active"
    assert {Path(p) for p in probes} <= {tmp_path}, "no per-id file probes, only the root check"


def test_ambiguous_id_prefers_exact_and_warns(tmp_path: Path) -> None:
    exact = _img(tmp_path / "7.png")
    _img(tmp_path / "00007.png")
    with pytest.warns(UserWarning, match="match several files"):
        ds = ImageIdDataset(tmp_path, ["7"])
    assert ds.paths == [exact]


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"definitely not a png" * 4)
    return path


def test_corrupt_file_skipped_and_counted(tmp_path: Path) -> None:
    _img(tmp_path / "00000.png")
    bad = _corrupt(tmp_path / "00001.png")
    truncated = tmp_path / "00002.jpg"
    _img(truncated, size=64)
    truncated.write_bytes(truncated.read_bytes()[:100])
    _img(tmp_path / "00003.png")
    ds = ImageIdDataset(tmp_path, ["0", "1", "2", "3"], skip_bad=True)
    with pytest.warns(UserWarning, match="00001.png"):
        assert ds[1] is None
    with pytest.warns(UserWarning, match="00002.jpg"):
        assert ds[2] is None
    assert ds.num_bad == 2 and ds.bad_paths == [str(bad), str(truncated)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(DataLoader(ds, batch_size=4, collate_fn=collate_skip_none))
    assert len(batches) == 1
    assert batches[0]["image"].shape == (2, 3, 8, 8)
    assert batches[0]["id"] == ["0", "3"]


def test_corrupt_file_raises_naming_file_without_skip_bad(tmp_path: Path) -> None:
    _corrupt(tmp_path / "00000.png")
    ds = ImageIdDataset(tmp_path, ["0"])
    with pytest.raises(OSError, match="00000.png"):
        ds[0]


def test_collate_skip_none_all_bad() -> None:
    assert collate_skip_none([None, None]) is None


def test_custom_transform_and_resolution(tmp_path: Path) -> None:
    _img(tmp_path / "0.png", size=16)
    ds = ImageIdDataset(tmp_path, ["0"], transform=lambda im: torch.tensor(im.size))
    assert ds[0]["image"].tolist() == [16, 16]
    ds = ImageIdDataset(tmp_path, ["0"], resolution=4)
    assert ds[0]["image"].shape == (3, 4, 4)


def test_ids_from_split_file(tmp_path: Path) -> None:
    split = tmp_path / "s.txt"
    split.write_text("# test split\n3\n1\n")
    root = tmp_path / "imgs"
    _img(root / "00001.png")
    _img(root / "00003.png")
    ds = ImageIdDataset(root, split)
    assert [ds[i]["id"] for i in range(2)] == ["3", "1"]


def test_id_candidates_order() -> None:
    c = id_candidates("69037", [".png"])
    assert c == ["69037.png", "69000/69037.png"]
    assert id_candidates("7", [".png", ".jpg"]) == [
        "7.png",
        "7.jpg",
        "00007.png",
        "00007.jpg",
        "00000/00007.png",
        "00000/00007.jpg",
    ]
    assert id_candidates("a/B.JPG") == ["a/B.jpg"]


@pytest.mark.skipif(
    not (SHARED / "data" / "faces").is_dir(), reason=f"no shared faces at {SHARED} (no ../shared checkout)"
)
def test_shared_real_faces_resolve_by_split_ids() -> None:
    ffhq_root = SHARED / "data" / "faces" / "ffhq"
    ffhq_ids = sorted(p.stem for p in ffhq_root.glob("*.png"))
    assert set(ffhq_ids) <= set(read_split("ffhq_val"))
    x = ImageIdDataset(ffhq_root, ffhq_ids)[0]["image"]
    assert x.shape[0] == 3 and -1 <= x.min() < x.max() <= 1
    celeba_root = SHARED / "data" / "faces" / "celebahq"
    ids = [str(int(p.stem)) for p in sorted(celeba_root.glob("*.png"))]  # unpadded split ids, padded files
    ds = ImageIdDataset(celeba_root, ids)
    assert len(ds) == len(ids) > 0
