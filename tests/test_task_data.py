"""pSp's image-to-image training data: the task transforms against an oracle of the official maths
(pixel2style2pixel 5cfff38, datasets/augmentations.py + configs/transforms_config.py, written here from their
equations in float64, not from their code), PairedDataset's pairing and errors, and the conf/data task configs."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from hydra.utils import instantiate
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from inversion.config import CONF_DIR, compose
from inversion.data import PairedDataset, collate_skip_none
from inversion.data.task_transforms import (
    BicubicDownSample,
    BilinearResize,
    PairedHorizontalFlip,
    ToGrayTensor,
    ToOneHot,
    parse_factors,
)

FACTORS = (1, 2, 4, 8, 16, 32)
TASK_CONFIGS = ("ffhq_frontalize", "celebs_sketch_to_face", "celebs_seg_to_face", "celebs_super_resolution")


# ----------------------------------------------------------------------------------------------- the oracle
def keys(x: float, a: float = -0.5) -> float:
    """Keys' cubic convolution kernel (Keys 1981; the clouard.users.greyc.fr page pSp cites)."""
    t = abs(x)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def oracle_taps(f: int) -> np.ndarray:
    """4f taps at (i - 2f + 0.5) / f, normalised to sum 1."""
    k = np.array([keys((i - 2 * f + 0.5) / f) for i in range(4 * f)])
    return k / k.sum()


def oracle_matrix(n: int, f: int) -> np.ndarray:
    """The 1-D operator [n / f, n]: reflect-pad (3f // 2 before, the rest of 3f after), 4f-tap filter, stride f."""
    k, before = oracle_taps(f), (3 * f) // 2
    m = np.zeros((n // f, n))
    for o in range(n // f):
        for j in range(4 * f):
            q = o * f + j - before  # index into the unpadded signal
            q = -q if q < 0 else (2 * (n - 1) - q if q >= n else q)  # reflect without repeating the edge
            m[o, q] += k[j]
    return m


def oracle_downsample(x: np.ndarray, f: int) -> np.ndarray:
    """[C, H, W] float64 -> [C, H/f, W/f]: rows first, then columns (separable, so one product)."""
    mh, mw = oracle_matrix(x.shape[1], f), oracle_matrix(x.shape[2], f)
    return np.stack([mh @ c @ mw.T for c in x])


def oracle_degrade(img: Image.Image, f: int) -> tuple[np.ndarray, np.ndarray]:
    """pSp's BilinearResize with factor f: ToTensor -> downsample -> clamp -> ToPILImage (x 255, truncation).
    Returns the uint8 HWC result and the pre-truncation values (x 255)."""
    x = np.asarray(img, dtype=np.float64).transpose(2, 0, 1) / 255
    scaled = np.clip(oracle_downsample(x, f), 0, 1) * 255
    return np.floor(scaled).astype(np.uint8).transpose(1, 2, 0), scaled.transpose(1, 2, 0)


def noise_image(size: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


NORMALIZE = [T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)]


# ----------------------------------------------------------------------------------------------- BicubicDownSample
@pytest.mark.parametrize("f", FACTORS)
def test_bicubic_kernel_is_keys_at_half_pixel_taps(f):
    k = BicubicDownSample(f).kernel
    assert k.dtype == torch.float32 and k.shape == (4 * f,)
    np.testing.assert_allclose(k.double().numpy(), oracle_taps(f), rtol=0, atol=1e-7)
    assert abs(float(k.sum()) - 1) < 1e-6 and torch.equal(k, k.flip(0))  # symmetric about the half-pixel centre


def test_factor_1_is_a_shifted_four_tap_blur_not_the_identity():
    np.testing.assert_allclose(BicubicDownSample(1).kernel.numpy(), [-1 / 16, 9 / 16, 9 / 16, -1 / 16], atol=1e-7)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = BicubicDownSample(1)(x)
    assert y.shape == x.shape and not torch.allclose(y, x, atol=1e-3)


@pytest.mark.parametrize("f", FACTORS)
def test_bicubic_downsample_matches_the_oracle(f):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(f))
    y = BicubicDownSample(f)(x)
    assert y.shape == (2, 3, 64 // f, 64 // f)
    for n in range(2):
        np.testing.assert_allclose(y[n].double().numpy(), oracle_downsample(x[n].double().numpy(), f),
                                   rtol=0, atol=2e-6)
    one = BicubicDownSample(f)(x[0, :1])  # any channel count, [C, H, W] too
    np.testing.assert_allclose(one.numpy(), y[0, :1].numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("f", FACTORS)
def test_bilinear_resize_matches_the_oracle_with_clamp_and_truncation(f):
    binary = np.random.default_rng(100 + f).integers(0, 2, (256, 256, 3), dtype=np.uint8) * 255
    img = Image.fromarray(binary if f <= 2 else np.asarray(noise_image(256, seed=100 + f)))
    ours = np.asarray(BilinearResize([f]).apply(img, f))
    want, scaled = oracle_degrade(img, f)
    assert ours.shape == want.shape == (256 // f, 256 // f, 3)
    near_tie = np.abs(scaled - np.round(scaled)) < 1e-3  # float32 vs float64 may truncate either side of a level
    assert np.array_equal(ours[~near_tie], want[~near_tie])
    assert np.abs(ours.astype(int) - want).max() <= 1
    if f <= 2:  # the cubic's negative lobes overshoot on black / white noise: the clamp is exercised
        raw = oracle_downsample(binary.transpose(2, 0, 1) / 255.0, f)
        assert raw.min() < 0 and raw.max() > 1 and (ours == 0).any() and (ours == 255).any()


def test_super_resolution_source_pipeline_matches_the_official_composition():
    """conf/data/celebs_super_resolution's source transform with one factor = pSp's SuperResTransforms source:
    Resize(256) -> BilinearResize -> Resize(256) -> ToTensor -> Normalize."""
    img = noise_image(300, seed=7)
    for f in (4, 32):
        one_factor = f"data.train.source_transform.transforms.1.factors=[{f}]"
        cfg = compose("train", ["data=celebs_super_resolution", one_factor])
        ours = instantiate(cfg.data.train.source_transform)(img)
        low, _ = oracle_degrade(T.Resize((256, 256))(img), f)
        want = T.Compose([T.Resize((256, 256)), *NORMALIZE])(Image.fromarray(low))
        assert ours.shape == want.shape == (3, 256, 256)
        diff = (ours - want).abs()
        assert float(diff.max()) <= 2 / 255 + 1e-6 and float((diff > 1e-6).float().mean()) < 0.01


# ----------------------------------------------------------------------------------------------- factor draws
def test_factor_draws_are_uniform_and_seeded():
    draws = [BilinearResize(seed=3).draw() for _ in range(3)]
    assert len(set(draws)) == 1  # a fresh transform with the same seed starts the same sequence
    t = BilinearResize(FACTORS, seed=3)
    seq = [t.draw() for _ in range(6000)]
    again = BilinearResize(FACTORS, seed=3)
    assert [again.draw() for _ in range(6000)] == seq
    other = BilinearResize(FACTORS, seed=4)
    assert [other.draw() for _ in range(100)] != seq[:100]
    counts = np.array([seq.count(f) for f in FACTORS])
    chi2 = float(((counts - 1000) ** 2 / 1000).sum())
    assert chi2 < 25, counts  # 5 dof: p < 1e-4 under uniformity
    clone = pickle.loads(pickle.dumps(t))  # what a DataLoader worker gets: restarts from the seed
    assert [clone.draw() for _ in range(50)] == seq[:50]


def test_factor_draws_from_the_global_rng_follow_torch_manual_seed():
    t = BilinearResize("1,2,4,8,16,32")
    torch.manual_seed(11)
    a = [t.draw() for _ in range(40)]
    torch.manual_seed(11)
    assert [t.draw() for _ in range(40)] == a and len(set(a)) > 3
    assert parse_factors("1, 2,4") == (1, 2, 4) and parse_factors(8) == (8,)
    with pytest.raises(ValueError, match="positive"):
        parse_factors([0, 2])
    with pytest.raises(ValueError, match="multiple"):
        BilinearResize([8]).apply(noise_image(20, 0), 8)


class _Draws(Dataset):
    def __init__(self, t):
        self.t = t

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.tensor([self.t.draw() for _ in range(20)])


def test_seeded_draws_differ_between_dataloader_workers():
    batches = list(DataLoader(_Draws(BilinearResize(FACTORS, seed=5)), batch_size=4, num_workers=2))
    assert not torch.equal(batches[0], batches[1])  # worker 0 and worker 1


# ----------------------------------------------------------------------------------------------- one-hot, sketch
def blocky_labels(size: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, n, (size // 8, size // 8)), np.ones((8, 8), dtype=np.int64)).astype(np.uint8)


def oracle_one_hot(labels: Image.Image, n: int, size: int | None) -> torch.Tensor:
    """pSp: Resize((size, size)) on the 'L' index image (PIL bilinear), ToOneHot(n), ToTensor, .float()."""
    if size is not None:
        labels = T.Resize((size, size))(labels)
    return torch.from_numpy(np.eye(n)[np.asarray(labels)].transpose(2, 0, 1)).float()


@pytest.mark.parametrize("src", [512, 256, 100])
def test_one_hot_matches_the_official_bilinear_resize_then_one_hot(src):
    labels = Image.fromarray(blocky_labels(src - src % 8, 19, seed=src))
    ours = ToOneHot(19, size=256)(labels)
    want = oracle_one_hot(labels, 19, 256)
    assert ours.dtype == torch.float32 and ours.shape == (19, 256, 256)
    assert torch.equal(ours, want)
    assert torch.equal(ours.sum(0), torch.ones(256, 256))  # exactly one class per pixel
    assert set(ours.unique().tolist()) == {0.0, 1.0}


def test_one_hot_bilinear_blends_indices_at_borders_and_nearest_does_not():
    a = np.ones((512, 512), np.uint8)
    a[:, 257:] = 17  # a border on an odd column: the 2x bilinear footprint averages 1 and 17
    labels = Image.fromarray(a)
    bilinear = ToOneHot(19, size=256)(labels).argmax(0)
    nearest = ToOneHot(19, size=256, interpolation="nearest")(labels).argmax(0)
    assert set(bilinear.unique().tolist()) - {1, 17}  # e.g. 9: pSp's behaviour, reproduced by default
    assert set(nearest.unique().tolist()) == {1, 17}
    same = ToOneHot(19, size=512)(labels)  # no resize when the size already matches: the map itself
    assert torch.equal(same.argmax(0), torch.from_numpy(a).long())
    palette = Image.fromarray(a, "L").convert("P")  # a palette file: its indices are the classes
    assert torch.equal(ToOneHot(19)(palette).argmax(0), torch.from_numpy(a).long())


def test_one_hot_rejects_indices_beyond_label_nc():
    a = np.zeros((16, 16), np.uint8)
    a[3, 4] = 19
    with pytest.raises(ValueError, match=r"0\.\.19.*label_nc=19"):
        ToOneHot(19)(Image.fromarray(a))
    assert ToOneHot(20)(Image.fromarray(a)).shape == (20, 16, 16)
    with pytest.raises(ValueError, match="interpolation"):
        ToOneHot(19, interpolation="bicubic")
    with pytest.raises(ValueError, match="single-channel"):
        ToOneHot(19)(noise_image(8, 0))


def test_sketch_is_gray_zero_one_without_normalize():
    img = noise_image(300, seed=2)  # pSp's sketches are saved RGB by save_image; the dataset converts to L
    ours = ToGrayTensor(256)(img)
    want = T.Compose([T.Resize((256, 256)), T.ToTensor()])(img.convert("L"))
    assert ours.shape == (1, 256, 256) and torch.equal(ours, want)
    assert 0 <= float(ours.min()) and float(ours.max()) <= 1 and float(ours.min()) < 0.2 and float(ours.max()) > 0.8


# ----------------------------------------------------------------------------------------------- PairedDataset
def _save(img: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _gray(v: int, size: int = 16) -> Image.Image:
    return Image.new("RGB", (size, size), (v, v, v))


@pytest.fixture()
def sketches(tmp_path):
    """CelebA-HQ style unpadded targets 0..11 and sketches '<stem>_edges.jpg' whose gray level encodes the id."""
    for i in range(12):
        _save(_gray(20 * i), tmp_path / "img" / f"{i}.png")
        _save(_gray(20 * i), tmp_path / "sk" / f"{i}_edges.png")
    (tmp_path / "split.txt").write_text("# test\n" + "\n".join(str(i) for i in range(12)) + "\n")
    return tmp_path


def test_sources_pair_by_name_where_psp_index_pairing_would_not(sketches):
    ds = PairedDataset(sketches / "img", sketches / "split.txt", source_root=sketches / "sk",
                       source_name="{stem}_edges", source_mode="L", source_transform=ToGrayTensor())
    for i in range(12):
        item = ds[i]
        assert item["id"] == str(i) and Path(item["source_path"]).name == f"{i}_edges.png"
        assert item["source"].shape == (1, 16, 16) and item["image"].shape == (3, 16, 16)
        assert torch.allclose(item["source"], torch.full((1, 16, 16), 20 * i / 255))
        assert torch.allclose(item["image"], torch.full((3, 16, 16), 40 * i / 255 - 1))
    by_index = list(zip(sorted(p.name for p in (sketches / "img").iterdir()),
                        sorted(p.name for p in (sketches / "sk").iterdir()), strict=True))
    assert any(t.split(".")[0] != s.split("_")[0] for t, s in by_index)  # pSp's sorted lists: 10_edges < 1_edges
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate_skip_none)))
    assert batch["source"].shape == (4, 1, 16, 16) and batch["id"] == ["0", "1", "2", "3"]


def test_missing_source_files_are_one_error_naming_them(sketches):
    (sketches / "sk" / "3_edges.png").unlink()
    (sketches / "sk" / "7_edges.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"2 of 12.*3_edges.*7_edges") as err:
        PairedDataset(sketches / "img", sketches / "split.txt", source_root=sketches / "sk",
                      source_name="{stem}_edges", source_transform=ToGrayTensor())
    assert "source_name='{stem}_edges'" in str(err.value) and str(sketches / "sk") in str(err.value)
    with pytest.raises(FileNotFoundError, match="image ids not found"):  # a missing target as ImageIdDataset
        PairedDataset(sketches / "img", ["0", "99"])


def test_bad_source_files_skip_or_raise_like_image_id_dataset(sketches):
    bad = sketches / "sk" / "2_edges.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    kw = dict(source_root=sketches / "sk", source_name="{stem}_edges", source_transform=ToGrayTensor())
    ds = PairedDataset(sketches / "img", sketches / "split.txt", skip_bad=True, **kw)
    with pytest.warns(UserWarning, match="2_edges.png"):
        assert ds[2] is None
    assert ds.num_bad == 1 and ds.bad_paths == [str(bad)] and ds[1] is not None
    batch = collate_skip_none([ds[1], None, ds[3]])
    assert batch["source"].shape == (2, 1, 16, 16)
    strict = PairedDataset(sketches / "img", sketches / "split.txt", **kw)
    with pytest.raises(OSError, match="2_edges.png"):
        strict[2]
    (sketches / "img" / "4.png").write_bytes(b"not an image")  # a bad target is skipped the same way
    with pytest.warns(UserWarning, match="4.png"):
        assert ds[4] is None


def test_label_sources_one_hot_and_out_of_range_indices_name_the_file(tmp_path):
    for i in range(3):
        _save(_gray(10 * i, 32), tmp_path / "img" / f"{i:05d}.jpg")
        _save(Image.fromarray(blocky_labels(32, 19, seed=i)), tmp_path / "seg" / f"{i:05d}.png")
    kw = dict(source_root=tmp_path / "seg", source_mode="labels", source_transform=ToOneHot(19, size=32))
    ds = PairedDataset(tmp_path / "img", ["0", "1", "2"], **kw)  # default source_name "{rel}": same name, any ext
    item = ds[1]
    assert Path(item["source_path"]).name == "00001.png" and item["source"].shape == (19, 32, 32)
    assert torch.equal(item["source"].argmax(0), torch.from_numpy(blocky_labels(32, 19, seed=1)).long())
    big = blocky_labels(32, 19, seed=2)
    big[0, 0] = 23
    _save(Image.fromarray(big), tmp_path / "seg" / "00002.png")
    with pytest.raises(ValueError, match=r"00002\.png.*label_nc=19"):
        ds[2]


def test_nested_sources_by_relative_path(tmp_path):
    _save(_gray(50), tmp_path / "img" / "69000" / "69037.png")
    _save(_gray(60), tmp_path / "seg" / "69000" / "69037.jpg")
    ds = PairedDataset(tmp_path / "img", ["69037"], source_root=tmp_path / "seg", source_transform=T.ToTensor())
    assert ds.source_names() == ["69000/69037"] and ds.source_paths[0] == tmp_path / "seg" / "69000" / "69037.jpg"


def test_bad_configurations_are_errors(sketches):
    with pytest.raises(ValueError, match="needs a source_transform"):
        PairedDataset(sketches / "img", ["0"], source_root=sketches / "sk")
    with pytest.raises(ValueError, match="may only use"):
        PairedDataset(sketches / "img", ["0"], source_name="{name}_edges", source_transform=T.ToTensor())
    with pytest.raises(ValueError, match="source_mode"):
        PairedDataset(sketches / "img", ["0"], source_mode="CMYK")


def _asym(size: int = 16) -> Image.Image:
    a = np.zeros((size, size, 3), np.uint8)
    a[:, : size // 4] = 255  # bright left edge: flips are visible
    return Image.fromarray(a)


def test_same_file_source_and_flips(tmp_path):
    for i in range(6):
        _save(_asym(), tmp_path / f"{i:05d}.png")
    ids = [str(i) for i in range(6)]
    plain = T.Compose(NORMALIZE)
    ref = plain(_asym())
    inversion = PairedDataset(tmp_path, ids, plain)  # no source_transform: the source is the target tensor
    item = inversion[0]
    assert item["source"] is item["image"] and item["source_path"] == item["path"]
    flip_source = T.Compose([T.RandomHorizontalFlip(1.0), *NORMALIZE])
    ds = PairedDataset(tmp_path, ids, plain, source_transform=flip_source)  # same file, read once
    assert torch.equal(ds[0]["image"], ref) and torch.equal(ds[0]["source"], ref.flip(-1))
    shared = PairedDataset(tmp_path, ids, plain, source_transform=plain, joint_transform=PairedHorizontalFlip(1.0))
    assert torch.equal(shared[0]["image"], ref.flip(-1)) and torch.equal(shared[0]["source"], ref.flip(-1))
    coin = PairedDataset(tmp_path, ids * 10, plain, source_transform=plain,
                         joint_transform=PairedHorizontalFlip(0.5, seed=0))
    flips = [(torch.equal(it["image"], ref), torch.equal(it["source"], ref)) for it in coin]
    assert all(a == b for a, b in flips) and 10 < sum(a for a, _ in flips) < 50  # one coin for both
    rand = T.Compose([T.RandomHorizontalFlip(0.5), *NORMALIZE])
    independent = PairedDataset(tmp_path, ids * 10, rand, source_transform=rand)  # frontalization
    torch.manual_seed(0)
    flips = [(torch.equal(it["image"], ref), torch.equal(it["source"], ref)) for it in independent]
    assert any(a != b for a, b in flips) and any(a == b for a, b in flips)


# ----------------------------------------------------------------------------------------------- conf/data
@pytest.fixture()
def celebs(tmp_path):
    """A tiny CelebA-HQ-like tree: images 0..3 (64 px noise), sketches, 512 px label maps, a split file."""
    for i in range(4):
        _save(noise_image(64, seed=i), tmp_path / "img" / f"{i}.jpg")
        _save(noise_image(64, seed=10 + i), tmp_path / "sk" / f"{i}_edges.jpg")
        _save(Image.fromarray(blocky_labels(512, 19, seed=i)), tmp_path / "seg" / f"{i}.png")
    (tmp_path / "split.txt").write_text("0\n1\n2\n3\n")
    return tmp_path


def _data_module(root: Path, name: str, *extra: str):
    overrides = [f"data={name}", f"paths.data_root={root / 'img'}", f"paths.celebahq_root={root / 'img'}",
                 f"paths.celebahq_sketch_root={root / 'sk'}", f"paths.celebahq_seg_root={root / 'seg'}",
                 f"data.train.ids={root / 'split.txt'}", f"data.val.ids={root / 'split.txt'}",
                 "data.train.min_size=0", "data.val.min_size=0", "data.num_workers=0", "data.batch_size=2", *extra]
    cfg = compose("train", overrides)
    dm = instantiate(cfg.data, generator=None, seed=0, _recursive_=False)
    dm.setup()
    return cfg, dm


def _hf_energy(x: torch.Tensor) -> float:
    return float((x[..., 1:] - x[..., :-1]).abs().mean())


@pytest.mark.parametrize("name", TASK_CONFIGS)
def test_task_data_configs_compose_and_yield_batches(celebs, name):
    text = (CONF_DIR / "data" / f"{name}.yaml").read_text()
    assert "pixel2style2pixel 5cfff38" in text and "defaults:\n  - ffhq" in text  # cites the source; a delta of ffhq
    extra = ["data.val.source_transform.transforms.1.factors=[8]"] if name == "celebs_super_resolution" else []
    cfg, dm = _data_module(celebs, name, *extra)
    train_ids = "ffhq_all" if name == "ffhq_frontalize" else "celebahq_train"
    assert compose("train", [f"data={name}"]).data.train.ids == train_ids
    assert compose("train", [f"data={name}"]).data.val.ids == "celebahq_test"
    for split, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader())):
        batch = next(iter(loader))
        img, src = batch["image"], batch["source"]
        assert img.shape == (2, 3, 256, 256) and -1 <= float(img.min()) and float(img.max()) <= 1, split
        if name == "celebs_sketch_to_face":
            assert src.shape == (2, 1, 256, 256) and 0 <= float(src.min()) and float(src.max()) <= 1
        elif name == "celebs_seg_to_face":
            assert src.shape == (2, 19, 256, 256) and set(src.unique().tolist()) == {0.0, 1.0}
            assert torch.equal(src.sum(1), torch.ones(2, 256, 256))
        else:
            assert src.shape == (2, 3, 256, 256) and -1 <= float(src.min()) and float(src.max()) <= 1
        if name == "ffhq_frontalize":  # the same file, flipped or not independently of the target
            assert all(torch.equal(s, t) or torch.equal(s, t.flip(-1)) for s, t in zip(src, img, strict=True))
        if name == "celebs_super_resolution" and split == "val":  # factor 8: visibly less detail
            assert _hf_energy(src) < 0.5 * _hf_energy(img)
    if name == "celebs_super_resolution":
        assert list(cfg.data.train.source_transform.transforms[1].factors) == list(FACTORS)


def test_task_data_configs_are_listed_options_with_path_keys():
    from inversion.config import options

    assert set(TASK_CONFIGS) <= set(options("data"))
    paths = compose("train", []).paths
    assert paths.celebahq_sketch_root is None and paths.celebahq_seg_root is None
    seg = compose("train", ["data=celebs_seg_to_face", "data.train.source_transform.interpolation=nearest"]).data
    assert seg.train.source_transform.interpolation == "nearest"
    assert seg.val.source_transform.interpolation == "bilinear"  # the anchored val copy is its own node
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert instantiate(seg.train.source_transform).interpolation == "nearest"
