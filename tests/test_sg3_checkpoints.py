"""stylegan3-editing encoder checkpoints (ReStyle-pSp / ReStyle-e4e over StyleGAN3) through ``load_inverter``.

Small random networks are written in their file layout (``state_dict`` = ``encoder.*`` + the NVIDIA StyleGAN3
``Generator`` state dict under ``decoder.*`` with a batch-shaped ``synthesis.input.transform``, ``latent_avg``
[w_dim], ``opts`` with ``pathlib`` paths, e4e's optimizer / discriminator extras) and the loaded inverter is compared
with ``tests/sg3_editing_oracle.py``, written from their ``run_on_batch`` code.
"""

from __future__ import annotations

import os
import pathlib
from pathlib import PosixPath

import pytest
import torch
from sg3_editing_oracle import EditingNet, get_average_image, run_on_batch

from inversion import encoders as E
from inversion import load_inverter
from inversion.checkpoints import load_checkpoint_dict
from inversion.models import CheckpointError
from inversion.models.sg3_infer import infer_stylegan3_kwargs
from inversion.models.stylegan3 import StyleGAN3Generator

TINY_ENC = dict(channels=(16, 16, 32, 32))
# small configs R and T (NVIDIA's keywords; 14 layers -> 16 styles like theirs). R512 renders at 512 px, so the
# encoder input is pooled down (as 1024 -> 256); T64 and R32 are pooled up. R512's last layers are below channel_max.
CONFIGS = {
    "R512": dict(z_dim=32, w_dim=32, img_resolution=512, channel_base=2048, channel_max=16, conv_kernel=1,
                 use_radial_filters=True),
    "T64": dict(z_dim=24, w_dim=32, img_resolution=64, channel_base=1024, channel_max=32,
                mapping_kwargs={"num_layers": 3}),
    "R32": dict(z_dim=32, w_dim=32, img_resolution=32, channel_base=2048, channel_max=32, conv_kernel=1,
                use_radial_filters=True),
}
ENCODERS = {"BackboneEncoder": E.BackboneEncoder, "ProgressiveBackboneEncoder": E.ProgressiveBackboneEncoder}


def _generator(kw: dict, seed: int = 0) -> StyleGAN3Generator:
    """Random weights everywhere (incl. the input affine, biases, w_avg and magnitude EMAs)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN3Generator(**kw)
        with torch.no_grad():
            for name, t in G.state_dict().items():
                if name.endswith("magnitude_ema"):
                    t.uniform_(0.5, 2.0)
                elif name.endswith(("affine.weight", ".bias")) or name == "mapping.w_avg":
                    t.add_(0.2 * torch.randn_like(t))
            getattr(G.synthesis, G.synthesis.layer_names[-1]).weight.mul_(5)  # images of std ~0.1-0.5
    return G.eval().requires_grad_(False)


def _encoder(enc_type: str, w_dim: int, seed: int = 1) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = ENCODERS[enc_type](num_ws=16, w_dim=w_dim, in_channels=6, input_size=256, **TINY_ENC)
        with torch.no_grad():
            for name, t in enc.state_dict().items():
                if name.endswith("running_mean"):
                    t.normal_(0, 0.1)
                elif name.endswith("running_var"):
                    t.uniform_(0.5, 1.5)
                elif name.endswith("linear.weight"):
                    t.mul_(30)  # residuals that depend clearly on the input (std ~0.8 instead of ~0.03)
    return enc.eval().requires_grad_(False)


def _opts(enc_type: str, n_iters: int) -> dict:
    """dataclasses.asdict(TrainOptions / e4eTrainOptions) as they save it: pathlib paths, strings, numbers."""
    opts = dict(exp_dir=PosixPath("experiments/restyle"), dataset_type="ffhq_encode", encoder_type=enc_type,
                input_nc=6, output_size=1024, n_iters_per_batch=n_iters, batch_size=2, test_batch_size=2, workers=4,
                test_workers=4, learning_rate=1e-4, optim_name="ranger", train_decoder=False,
                start_from_latent_avg=True, lpips_lambda=0.8, id_lambda=0.1, l2_lambda=1.0, w_norm_lambda=0.0,
                moco_lambda=0.0, stylegan_weights=PosixPath("pretrained_models/stylegan3-r-ffhq-1024x1024.pkl"),
                checkpoint_path=None, max_steps=500000, image_interval=100, board_interval=50, val_interval=5000,
                save_interval=10000, max_val_batches=None, device="cuda:0")
    if enc_type.startswith("Progressive"):
        opts.update(w_discriminator_lambda=0.1, w_discriminator_lr=2e-5, r1=10.0, d_reg_every=16, use_w_pool=True,
                    w_pool_size=50, truncation_psi=0.7, delta_norm=2, delta_norm_lambda=2e-4, progressive_steps=None,
                    progressive_start=None, progressive_step_every=2000, save_training_data=False,
                    sub_exp_dir=None, resume_training_from_ckpt=None, update_param_list=None)
    return opts


def _write(tmp_path, cfg: str, enc_type: str, n_iters: int = 3) -> tuple[pathlib.Path, torch.nn.Module]:
    G = _generator(CONFIGS[cfg])
    enc = _encoder(enc_type, G.w_dim)
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in G.state_dict().items()})
    # the buffer holds whatever forward() last assigned: batch-shaped (here a rotation, which must be ignored)
    rot = torch.tensor([[0.8, 0.6, 0.1], [-0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    state["decoder.synthesis.input.transform"] = rot.repeat(2, 1, 1)
    ckpt = {"state_dict": state, "opts": _opts(enc_type, n_iters),
            "latent_avg": G.mapping.w_avg + 0.3 * torch.randn(G.w_dim, generator=torch.Generator().manual_seed(5))}
    if enc_type.startswith("Progressive"):  # coach_restyle_e4e's extras
        ckpt.update(global_step=1234, best_val_loss=0.25,
                    optimizer={"state": {0: {"step": 3, "exp_avg": torch.zeros(4)}},
                               "param_groups": [{"lr": 1e-4, "betas": (0.95, 0.999), "k": 6, "params": [0]}]},
                    discriminator_state_dict={"0.weight": torch.randn(4, 4)},
                    discriminator_optimizer_state_dict={"state": {}, "param_groups": []})
    path = tmp_path / f"restyle_{cfg}_{enc_type}.pt"
    torch.save(ckpt, path)
    return path, enc


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 256, 256, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize(("cfg", "enc_type"), [("R512", "BackboneEncoder"), ("T64", "ProgressiveBackboneEncoder")])
def test_stylegan3_editing_checkpoint_reproduces_run_on_batch(tmp_path, monkeypatch, cfg, enc_type):
    path, _ = _write(tmp_path, cfg, enc_type)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    inv = load_inverter(path)
    assert calls and all(c is True for c in calls)  # never weights_only=False
    monkeypatch.undo()

    G = inv.generator
    assert isinstance(G, StyleGAN3Generator) and G.num_ws == 16 and inv.num_iters == 3 and inv.residual
    assert not inv.training and not any(p.requires_grad for p in inv.parameters())
    assert torch.equal(G.synthesis.input.transform, torch.eye(3))
    assert type(inv.encoder) is ENCODERS[enc_type]

    # the oracle: their networks built from the known config, loaded their way, their loop
    net = EditingNet(path, _encoder(enc_type, G.w_dim, seed=7), StyleGAN3Generator(**CONFIGS[cfg])).eval()
    x = _images(2)
    with torch.no_grad():
        out = inv.invert(x)
        avg_image = get_average_image(net)
        images, latents = run_on_batch(x, net, 3, avg_image)
        assert torch.allclose(inv.avg_image(torch.float32, torch.device("cpu"))[0], avg_image, atol=1e-5)
    assert len(out.steps) == 3
    scale = max(float(out.images.abs().max()), 1e-3)
    for it, step in enumerate(out.steps):
        want_ws = torch.stack([torch.from_numpy(latents[i][it]) for i in range(2)])
        want_img = torch.stack([images[i][it] for i in range(2)])
        res = CONFIGS[cfg]["img_resolution"]
        assert step.ws.shape == (2, 16, G.w_dim) and step.images.shape == (2, 3, res, res)
        assert torch.allclose(step.ws, want_ws, atol=1e-5, rtol=1e-5), (it, (step.ws - want_ws).abs().max())
        err = (step.images - want_img).abs().max()
        assert torch.allclose(step.images, want_img, atol=1e-5 * scale, rtol=0), (it, err)
    # the residual loop moves the latents (the comparison is not trivially between equal steps)
    assert not torch.allclose(out.steps[0].ws, out.steps[2].ws)


def test_n_iters_from_opts(tmp_path):
    path, _ = _write(tmp_path, "R32", "BackboneEncoder", n_iters=2)
    assert load_inverter(path).num_iters == 2


def test_official_r1024_layout_is_inferred():
    """Their decoder: SG3Generator(checkpoint_path=None).decoder (R, 1024 px) -> the same keywords back."""
    theirs = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3, channel_base=65536,
                  channel_max=1024, conv_kernel=1, filter_size=6, magnitude_ema_beta=0.9988915792636801,
                  output_scale=0.25, use_radial_filters=True)
    G = StyleGAN3Generator(**theirs)
    assert G.synthesis.layer_names == [
        "L0_36_1024", "L1_36_1024", "L2_52_1024", "L3_52_1024", "L4_84_1024", "L5_148_1024", "L6_148_1024",
        "L7_276_645", "L8_276_406", "L9_532_256", "L10_1044_161", "L11_1044_102", "L12_1044_64", "L13_1024_64",
        "L14_1024_3"]
    state = G.state_dict()
    state["synthesis.input.transform"] = torch.eye(3).repeat(2, 1, 1)
    kw = infer_stylegan3_kwargs(state, "sg3-r-ffhq-1024")
    assert {k: kw[k] for k in theirs if k in kw} == {k: v for k, v in theirs.items() if k in kw}
    assert kw["mapping_kwargs"] == {"num_layers": 2} and kw["num_layers"] == 14 and "filter_size" not in kw
    # the "landscape" config (T)
    T = StyleGAN3Generator(img_resolution=256, channel_base=32768, channel_max=512)
    kw = infer_stylegan3_kwargs(T.state_dict(), "landscape")
    got = (kw["conv_kernel"], kw["use_radial_filters"], kw["channel_base"], kw["channel_max"])
    assert got == (3, False, 32768, 512)


def _resave(tmp_path, path, name, edit):
    with torch.serialization.safe_globals([PosixPath]):
        ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    out = tmp_path / name
    torch.save(ckpt, out)
    return out


def test_stylegan3_editing_checkpoint_errors(tmp_path):
    path, _ = _write(tmp_path, "R32", "BackboneEncoder")

    def misshape(ckpt):
        k = next(k for k in ckpt["state_dict"] if k.startswith("decoder.synthesis.L3_") and k.endswith("affine.weight"))
        ckpt["state_dict"][k] = torch.zeros(5, 5)

    bad = _resave(tmp_path, path, "misshaped.pt", misshape)
    with pytest.raises(CheckpointError, match=r"misshaped\.pt.*synthesis\.L3_\d+_\d+\.affine\.weight: file \(5, 5\)"):
        load_inverter(bad)

    def drop(ckpt):
        del ckpt["state_dict"]["decoder.synthesis.input.freqs"]

    with pytest.raises(CheckpointError, match=r"missing.pt.*missing \['synthesis\.input\.freqs'\]"):
        load_inverter(_resave(tmp_path, path, "missing.pt", drop))

    def filters(ckpt):
        k = next(k for k in ckpt["state_dict"] if k.endswith("L2_36_32.down_filter"))
        ckpt["state_dict"][k] = ckpt["state_dict"][k] * 1.01

    with pytest.raises(CheckpointError, match=r"filters.pt.*low-pass filters"):
        load_inverter(_resave(tmp_path, path, "filters.pt", filters))

    def psp(ckpt):
        ckpt["opts"]["encoder_type"] = "GradualStyleEncoder"

    with pytest.raises(CheckpointError, match="ReStyle"):
        load_inverter(_resave(tmp_path, path, "psp.pt", psp))

    def avg(ckpt):
        ckpt["latent_avg"] = torch.zeros(7)

    with pytest.raises(CheckpointError, match=r"avg.pt \(latent_avg\)"):
        load_inverter(_resave(tmp_path, path, "avg.pt", avg))


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_only_paths_are_allow_listed(tmp_path, monkeypatch):
    path, _ = _write(tmp_path, "R32", "BackboneEncoder")

    def evil(ckpt):
        ckpt["opts"]["exp_dir"] = _Payload()

    with pytest.raises(CheckpointError, match="weights_only"):
        load_inverter(_resave(tmp_path, path, "evil.pt", evil))

    # a Windows path pickled on Windows ('pathlib.WindowsPath') reads on any OS, as a pure path
    class WindowsPath(pathlib.PureWindowsPath):
        __module__ = "pathlib"
        __qualname__ = "WindowsPath"

    def windows(ckpt):
        ckpt["opts"]["exp_dir"] = WindowsPath("C:/experiments/restyle")

    monkeypatch.setattr(pathlib, "WindowsPath", WindowsPath)
    win = _resave(tmp_path, path, "win.pt", windows)
    monkeypatch.undo()
    assert b"pathlib\nWindowsPath" in win.read_bytes()  # the name a Windows-saved file carries
    opts = load_checkpoint_dict(win)["opts"]
    assert opts["exp_dir"] == pathlib.PureWindowsPath("C:/experiments/restyle")
    assert opts["stylegan_weights"] == pathlib.PurePosixPath("pretrained_models/stylegan3-r-ffhq-1024x1024.pkl")
    assert load_inverter(win).num_iters == 3
