"""The real Hydra configs compose and instantiate at tiny size; entry points run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from inversion.models import CheckpointError, Generator

from helpers import tiny_generator

CONF = str(Path(__file__).resolve().parents[1] / "conf")
REPO = Path(__file__).resolve().parents[1]


def test_demo_generator_config_instantiates():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="sample", overrides=["generator=demo", "generator.img_resolution=32"])
    G = instantiate(cfg.generator)
    assert isinstance(G, Generator) and G.img_resolution == 32 and G.num_ws == 8


@pytest.mark.parametrize("name,res,num_ws", [("stylegan2_ffhq_1024", 1024, 18), ("stylegan2_256", 256, 14)])
def test_real_generator_configs_require_a_path_and_check_it(tmp_path, name, res, num_ws):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="sample", overrides=[f"generator={name}"])
        assert cfg.generator.img_resolution == res and cfg.generator.num_ws == num_ws
        with pytest.raises((FileNotFoundError, InstantiationException), match="paths.stylegan2_"):
            instantiate(cfg.generator)  # no file configured: the error names the key to set
        # a 32 px file given to a 1024/256 config is refused with both numbers named
        G = tiny_generator(32)
        path = tmp_path / "g.pt"
        torch.save({"g_ema": {k: v for k, v in G.state_dict().items() if k != "w_avg"}, "latent_avg": G.w_avg}, path)
        key = "stylegan2_256" if res == 256 else "stylegan2_ffhq"
        cfg = compose(config_name="sample", overrides=[f"generator={name}", f"paths.{key}={path}"])
    expected = f"resolution 32 in the file, {res} in the config"
    with pytest.raises((CheckpointError, InstantiationException), match=expected):
        instantiate(cfg.generator)


def test_sample_cli_writes_a_grid(tmp_path):
    out = tmp_path / "grid.png"
    r = subprocess.run(
        [sys.executable, "-m", "inversion", "sample", f"out={out}", "num_images=4", "generator.img_resolution=32"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    from PIL import Image

    assert Image.open(out).size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)  # 2x2 grid, torchvision padding 2


def test_generator_benchmark_runs_on_cpu_at_small_size():
    from benchmarks import generator as bench

    rows = bench.main(["--device", "cpu", "--resolution", "32", "--batch-sizes", "1", "--repeats", "1",
                       "--warmup", "0"])
    assert [r["what"] for r in rows] == ["forward", "forward+backward to ws"]
    assert all(r["ms_per_image"] > 0 for r in rows)


def test_renamed_keys_still_work_with_a_warning():
    """The pre-redesign spellings (one release of grace): each is read as its new key, with a FutureWarning."""
    from inversion.config import compose as compose_conf
    from inversion.config import rename_deprecated

    with pytest.warns(FutureWarning, match="paths.lpips_alex"):
        cfg = compose_conf("evaluate", ["checkpoint=x", "metrics.lpips_backbone=/w/alex.pth",
                                        "metrics.id_net=curricularface", "metrics.id_weights=/w/irse.pth"])
    assert cfg.paths.lpips_alex == "/w/alex.pth" and cfg.paths.ir_se50 == "/w/irse.pth"
    assert cfg.metrics.id_sim.module._target_.endswith("CurricularFaceIDLoss.from_pretrained")
    with pytest.warns(FutureWarning):
        cfg = compose_conf("train", ["loss_size=32", "image_every_n_steps=0", "refine=image2stylegan",
                                     "refine.vgg_weights=/w/vgg.pth"])
    assert (cfg.module.loss_size, cfg.module.image_every_n_steps, cfg.paths.vgg16) == (32, 0, "/w/vgg.pth")
    assert rename_deprecated(["seed=1", "+trainer.foo=2"]) == ["seed=1", "+trainer.foo=2"]  # others untouched
    with pytest.raises(ValueError, match="metrics.id_net"):
        rename_deprecated(["metrics.id_net=vggface"])
