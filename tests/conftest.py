"""Shared fixtures: tiny generators, the demo generator, and the optional ../shared folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inversion.models import Generator, demo_generator

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INVERSION_SHARED", REPO.parent / "shared"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder (real LPIPS weights, faces, CelebA-HQ mapping); tests skip without it."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED} (set INVERSION_SHARED); skipping tests that need real data")
    return SHARED


@pytest.fixture(scope="session")
def demo_G() -> Generator:
    return demo_generator()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> dict:
    """``python train.py`` with no arguments (the README's main job), run once per session in a temporary
    folder: ``{"cwd", "run_dir", "export", "result"}``. Tests of the trained demo encoder share it."""
    cwd = tmp_path_factory.mktemp("demo_run")
    result = subprocess.run([sys.executable, str(REPO / "train.py")], cwd=cwd, capture_output=True, text=True,
                            timeout=1200)
    run_dir = cwd / "outputs" / "train" / "demo"
    return {"cwd": cwd, "run_dir": run_dir, "export": run_dir / "export" / "inverter.pt", "result": result}


@pytest.fixture(scope="session")
def demo_export(demo_run) -> Path:
    """The trained demo encoder's export (fails, with train.py's stderr, if the demo run failed)."""
    assert demo_run["result"].returncode == 0, demo_run["result"].stderr[-3000:]
    return demo_run["export"]


# ----------------------------------------------------------------------------- configs at tiny size
TINY_CHANNELS = "[16,16,32,32]"


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    """Small random files in the official layouts standing in for the weights and data of the experiments: a
    rosinality-layout generator (32 px, num_ws 8, w_dim 16), an IR-SE50 with 16/32 channels (encoder init and ID
    loss), a folder of 32 px-ready images and its split file."""
    import numpy as np
    from PIL import Image

    from inversion.encoders import Backbone
    from inversion.models import demo_stylegan3

    from helpers import tiny_generator

    root = tmp_path_factory.mktemp("tiny_files")
    G = tiny_generator(32)
    gen = root / "stylegan2-tiny.pt"
    torch.save({"g_ema": {k: v for k, v in G.state_dict().items() if k != "w_avg"}, "latent_avg": G.w_avg}, gen)
    sg3 = root / "sg3-r-tiny.pt"  # stylegan3-editing's layout: a bare StyleGAN3 state dict
    torch.save(demo_stylegan3(img_resolution=32, w_dim=16, z_dim=16, channel_max=16, use_radial_filters=True
                              ).state_dict(), sg3)
    irse = root / "model_ir_se50_tiny.pth"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(Backbone(112, 50, "ir_se", channels=(16, 16, 32, 32)).state_dict(), irse)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    ids = [f"{i:05d}" for i in range(4)]
    for i in ids:
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images / f"{i}.png")
    split = root / "split.txt"
    split.write_text("\n".join(ids) + "\n")
    sketches, segs = root / "sketches", root / "segs"  # pSp's task sources: <stem>_edges sketches, index maps
    sketches.mkdir()
    segs.mkdir()
    for i in ids:
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8), mode="L").save(sketches / f"{i}_edges.png")
        Image.fromarray(rng.integers(0, 19, (40, 40), dtype=np.uint8), mode="L").save(segs / f"{i}.png")
    return {"generator": gen, "stylegan3": sg3, "ir_se50": irse, "images": images, "split": split,
            "sketches": sketches, "segs": segs}


def tiny_overrides(cfg, files: dict[str, Path]) -> list[str]:
    """Overrides that shrink a composed train config to 32 px and 2 CPU steps, whatever its groups: each override
    is chosen by what the config holds (a generator file or a seeded one, folder or generated data, ...)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    # a non-square encoder input with a content box (cars: 192x256 of the 512x384 picture in a 512 frame) shrinks to
    # a 32x64 input of the 24x32 picture in a 32 px frame (losses at 48x64: AlexNet needs that much)
    box = cfg.encoder.get("content_box") is not None
    size = "[32,64]" if box else "32"
    out = ["trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
           "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", f"module.loss_size={'[48,64]' if box else 32}",
           "module.image_every_n_steps=0", f"encoder.net.input_size={size}",
           f"encoder.net.channels={TINY_CHANNELS}", "data.batch_size=2", "data.num_workers=0",
           f"paths.ir_se50={files['ir_se50']}"] + (["encoder.content_box=[4,28,0,32]"] if box else [])
    gen = cfg.generator._target_
    if gen.endswith("load_generator"):
        key = OmegaConf.to_container(cfg.generator, resolve=False)["path"][2:-1]  # ${paths.<key>}
        sg3 = "stylegan3" in key
        out += [f"{key}={files['stylegan3' if sg3 else 'generator']}", "generator.img_resolution=32",
                f"generator.num_ws={16 if sg3 else 8}", "generator.w_dim=16"]
    else:
        out += ["generator.img_resolution=32", "generator.z_dim=16", "generator.w_dim=16", "generator.n_mlp=2",
                "generator.channel_max=16"] + (["generator.device=cpu"] if "device" in cfg.generator else [])
    if cfg.data.from_generator:
        out += ["data.train.seeds=[0,1,2,3]", "data.val.seeds=[1000,1001]"]
    else:
        out += [f"paths.data_root={files['images']}", f"paths.celebahq_root={files['images']}",
                f"paths.val_root={files['images']}", f"data.train.ids={files['split']}",
                f"data.val.ids={files['split']}"]
        for split in ("train", "val"):
            if "min_size" in cfg.data[split]:
                out.append(f"data.{split}.min_size=32")
            if "transform" in cfg.data[split]:
                out.append(f"data.{split}.transform.transforms.0.size={size if box else '[32,32]'}")
            out += _tiny_source(cfg.data[split], f"data.{split}", files)
    if int(cfg.encoder.get("num_iters", 1)) > 1:
        out.append("encoder.num_iters=2")
    for name, term in (cfg.loss or {}).items():
        target = (term.get("module") or {}).get("_target_", "")
        if target.startswith("inversion.losses.IDLoss"):
            out.append(f"+loss.{name}.module.channels={TINY_CHANNELS}")
        if target.startswith("inversion.losses.LPIPSLoss"):  # random LPIPS: no trunk file
            out.append(f"net@loss.{name}.module=random_lpips_alex")
        if target.startswith("inversion.losses.FeatureSimilarityLoss"):  # random MoCo ResNet-50: no file
            out.append(f"net@loss.{name}.module=random_moco")
        if term.get("crop") is not None:  # pSp's [35:223, 32:220] of 256 px, scaled to 64 px (AlexNet's minimum)
            out += [f"loss.{name}.crop=[8,56,8,56]", "module.loss_size=64"]
    if float(cfg.collaborative.weight) > 0:
        out.append("collaborative.steps=2")
    assert get_class(cfg.module._target_)  # the module class resolves
    return out


def _tiny_source(data, key: str, files: dict[str, Path]) -> list[str]:
    """Overrides for a paired dataset's source (pSp's tasks): the tiny sketch / label-map folders, 32 px sizes and
    down-sampling factors a 32 px image can take."""
    from omegaconf import OmegaConf

    out = []
    root = OmegaConf.to_container(data, resolve=False).get("source_root")
    if isinstance(root, str) and root.startswith("${paths."):
        out.append(f"{root[2:-1]}={files['sketches' if 'sketch' in root else 'segs']}")
    source = data.get("source_transform")
    if source is None:
        return out
    steps = [(f"{key}.source_transform", source)] + [
        (f"{key}.source_transform.transforms.{i}", t) for i, t in enumerate(source.get("transforms") or [])]
    for name, step in steps:
        if "size" in step:
            out.append(f"{name}.size=[32,32]")
        if "factors" in step:
            out.append(f"{name}.factors=[1,2]")
    return out


@pytest.fixture
def train_config(tmp_path, tiny_files, monkeypatch):
    """``train_config(experiment, *overrides)``: ``conf/train.yaml`` with that experiment, shrunk by
    :func:`tiny_overrides` (wandb offline), writing into ``tmp_path / experiment``."""
    from inversion.config import compose

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")

    def make(experiment: str, *overrides: str):
        base = [f"experiment={experiment}", f"output_dir={tmp_path / experiment}"]
        cfg = compose("train", base)
        return compose("train", [*base, *tiny_overrides(cfg, tiny_files), *overrides])

    return make
