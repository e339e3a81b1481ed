"""Every experiment in conf/experiment composes and trains 2 steps at tiny size (shared fixtures in conftest)."""

from __future__ import annotations

import pytest

from inversion import load_inverter
from inversion.config import compose, options
from inversion.training import train

EXPERIMENTS = options("experiment")


def test_the_experiments_are_found():
    assert {"demo", "psp_ffhq", "e4e_ffhq", "restyle_psp_ffhq", "restyle_e4e_ffhq"} <= set(EXPERIMENTS)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_trains_two_steps(experiment, train_config, tmp_path):
    cfg = train_config(experiment)
    assert cfg.name == experiment
    summary = train(cfg)
    assert summary["global_step"] == 2
    run = tmp_path / experiment
    assert (run / "checkpoints" / "last.ckpt").is_file()
    inv = load_inverter(run / "export" / "inverter.pt", device="cpu")  # the export reloads on CPU
    assert inv.generator.img_resolution == 32
    if cfg.logger and "wandb" in str(cfg.logger):
        assert (run / "wandb").is_dir()  # wandb ran offline and wrote its run directory


def test_paper_experiments_are_deltas_with_the_papers_settings():
    """pSp is the base; e4e and ReStyle change only the encoder / module / loss groups and their own keys."""
    psp = compose("train", ["experiment=psp_ffhq"])
    assert psp.optimizer.lr == 1e-4 and psp.data.batch_size == 8 and psp.optimizer._target_.endswith("Ranger")
    assert (psp.loss.l2.weight, psp.loss.lpips.weight, psp.loss.id.weight) == (1.0, 0.8, 0.1)
    assert psp.loss.lpips.module.net == "alex" and psp.module.loss_size == 256
    for name, encoder, module, iters in [("e4e_ffhq", "Encoder4Editing", "E4EModule", 1),
                                         ("restyle_psp_ffhq", "BackboneEncoder", "InversionModule", 5),
                                         ("restyle_e4e_ffhq", "ProgressiveBackboneEncoder", "E4EModule", 5)]:
        cfg = compose("train", [f"experiment={name}"])
        assert cfg.encoder.net._target_.endswith(encoder) and cfg.module._target_.endswith(module), name
        assert cfg.encoder.num_iters == iters and cfg.optimizer == psp.optimizer and cfg.data == psp.data, name
        assert cfg.loss == psp.loss and cfg.generator == psp.generator, name
    e4e = compose("train", ["experiment=e4e_ffhq"]).module
    assert (e4e.adv_weight, e4e.d_lr, e4e.r1_gamma, e4e.d_reg_every) == (0.1, 2e-5, 10.0, 16)
    assert e4e.delta_reg_weight == 2e-4
    assert (e4e.progressive_start, e4e.progressive_step_every) == (20000, 2000)


@pytest.mark.parametrize("experiment,val,save", [
    ("psp_ffhq", 2500, 5000),  # pSp README --val_interval=2500 --save_interval=5000
    ("e4e_ffhq", 1000, 5000),  # e4e's option default (no README FFHQ command); save_interval None: ours keeps 5000
    ("restyle_psp_ffhq", 5000, 10000),  # ReStyle README --val_interval=5000 --save_interval=10000
    ("restyle_e4e_ffhq", 1000, 5000),  # ReStyle-e4e README passes neither: the defaults
])
def test_paper_experiments_validate_and_save_at_the_official_intervals(experiment, val, save):
    cfg = compose("train", [f"experiment={experiment}"])
    assert (cfg.trainer.val_check_interval, cfg.callbacks.checkpoint.every_n_train_steps) == (val, save)
