"""The one inversion loop, the encoder configs, and official / our checkpoint files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from inversion import encoders as E
from inversion.build import build_inverter
from inversion.checkpoints import load_inverter, save_inverter
from inversion.imageio import resize_images
from inversion.inverter import Inverter
from inversion.models import CheckpointError

from helpers import tiny_generator

CONF = str(Path(__file__).resolve().parents[1] / "conf")
TINY = dict(channels=(16, 16, 32, 32))


def _face_pool(x):  # pSp / ReStyle's torch.nn.AdaptiveAvgPool2d((256, 256))
    return F.adaptive_avg_pool2d(x, (256, 256))


def _images(n, size, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", ["psp", "e4e", "restyle_psp", "restyle_e4e", "w_encoder"])
@pytest.mark.parametrize("res", [32, 64])
def test_encoder_configs_build_inverters_with_right_shapes(name, res):
    G = tiny_generator(res)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="sample", overrides=[
            f"+encoder={name}", "encoder.net.channels=[16,16,32,32]", f"encoder.net.input_size={res}",
            "encoder.num_iters=2" if name.startswith("restyle") else "encoder.num_iters=1",
        ])
    inv = build_inverter(cfg.encoder, G).eval()
    with torch.no_grad():
        out = inv.invert(_images(2, res))
    assert out.ws.shape == (2, G.num_ws, G.w_dim)
    assert out.images.shape == (2, 3, res, res)
    assert len(out.steps) == (2 if name.startswith("restyle") else 1)
    assert inv.encoder_config["num_ws"] == G.num_ws and inv.encoder_config["w_dim"] == G.w_dim


def test_psp_single_pass_adds_latent_avg():
    G = tiny_generator(32)
    enc = E.GradualStyleEncoder(num_ws=G.num_ws, w_dim=G.w_dim, input_size=32, **TINY).eval()
    inv = Inverter(encoder=enc, generator=G, encoder_size=32)
    x = _images(2, 32)
    with torch.no_grad():
        out = inv.invert(x)
        ws = enc(x) + G.w_avg
        assert torch.allclose(out.ws, ws) and torch.equal(out.steps[0].delta, enc(x))
        assert torch.allclose(out.images, G.synthesis(ws), atol=1e-6)
        inv_abs = Inverter(encoder=enc, generator=G, encoder_size=32, start_from_latent_avg=False)
        assert torch.allclose(inv_abs.invert(x).ws, enc(x))


def test_restyle_one_step_from_w_avg_is_one_residual_step():
    G = tiny_generator(64)
    enc = E.BackboneEncoder(num_ws=G.num_ws, w_dim=G.w_dim, input_size=32, **TINY).eval()
    inv = Inverter(encoder=enc, generator=G, num_iters=3, residual=True, encoder_size=32)
    x = _images(2, 32)
    with torch.no_grad():
        one = inv.invert(x, num_iters=1)
        avg = F.adaptive_avg_pool2d(G.synthesis(G.w_avg.expand(1, G.num_ws, -1)), (32, 32)).expand(2, -1, -1, -1)
        ws1 = G.w_avg + enc(torch.cat([x, avg], 1))
        assert len(one.steps) == 1 and torch.allclose(one.ws, ws1, atol=1e-6)
        three = inv.invert(x)
        assert len(three.steps) == 3
        assert torch.allclose(three.steps[0].ws, ws1, atol=1e-6)
        y1 = F.adaptive_avg_pool2d(three.steps[0].images, (32, 32))
        assert torch.allclose(three.steps[1].ws, ws1 + enc(torch.cat([x, y1], 1)), atol=1e-5)


@pytest.mark.parametrize("detach", [True, False])
def test_gradient_flow_across_steps_is_a_parameter(detach):
    G = tiny_generator(32)
    enc = E.BackboneEncoder(num_ws=G.num_ws, w_dim=G.w_dim, input_size=32, **TINY)
    inv = Inverter(encoder=enc, generator=G, num_iters=2, residual=True, encoder_size=32, detach_steps=detach)
    out = inv.invert(_images(2, 32))
    grad = torch.autograd.grad(out.steps[1].images.sum(), out.steps[0].delta, allow_unused=True, retain_graph=True)[0]
    assert (grad is None) == detach
    # the final step's loss always trains the encoder
    assert torch.autograd.grad(out.images.sum(), next(enc.parameters()), allow_unused=True)[0] is not None


def test_inverter_rejects_bad_input_and_settings():
    G = tiny_generator(32)
    enc = E.GradualStyleEncoder(num_ws=G.num_ws, w_dim=G.w_dim, input_size=32, **TINY)
    inv = Inverter(encoder=enc, generator=G, encoder_size=32)
    with pytest.raises(ValueError, match="encoder size"):
        inv.invert(_images(1, 64))
    with pytest.raises(ValueError, match="residual"):
        inv.invert(_images(1, 32), num_iters=3)
    with pytest.raises(ValueError, match="resize mode"):
        Inverter(encoder=enc, generator=G, resize_mode="lanczos")


@pytest.mark.parametrize("mode", ["adaptive_avg", "area", "bilinear_antialias", "bilinear", "bicubic_antialias"])
def test_resize_modes(mode):
    x = _images(1, 64)
    y = resize_images(x, 32, mode)
    assert y.shape == (1, 3, 32, 32)
    if mode in ("adaptive_avg", "area"):  # both are exact 2x2 means for an integer factor
        assert torch.allclose(y, F.avg_pool2d(x, 2), atol=1e-6)


# ----------------------------------------------------------------------------- official files
OFFICIAL = {
    # encoder_type: (class, input_nc, residual)
    "GradualStyleEncoder": (E.GradualStyleEncoder, 3, False),
    "Encoder4Editing": (E.Encoder4Editing, 3, False),
    "BackboneEncoderUsingLastLayerIntoW": (E.WEncoder, 3, False),
    "BackboneEncoder": (E.BackboneEncoder, 6, True),
    "ProgressiveBackboneEncoder": (E.ProgressiveBackboneEncoder, 6, True),
    "ResNetBackboneEncoder": (E.ResNetBackboneEncoder, 6, True),
}


def _official_file(tmp_path, enc_type, G, n_iters=3):
    cls, nc, residual = OFFICIAL[enc_type]
    torch.manual_seed(1)
    enc = cls(num_ws=G.num_ws, w_dim=G.w_dim, in_channels=nc, input_size=256, **TINY).eval()
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in G.state_dict().items() if k != "w_avg"})
    latent_avg = (G.w_avg + 0.1).repeat(G.num_ws, 1)  # pSp saves latent_avg repeated per layer
    opts = {"encoder_type": enc_type, "input_nc": nc, "output_size": G.img_resolution,
            "start_from_latent_avg": True, "learn_in_w": enc_type.endswith("IntoW"), "n_iters_per_batch": n_iters,
            "exp_dir": "/somewhere", "lpips_lambda": 0.8}
    path = tmp_path / f"{enc_type}.pt"
    torch.save({"state_dict": state, "latent_avg": latent_avg, "opts": opts}, path)
    return path, enc, latent_avg


@pytest.mark.parametrize("enc_type", list(OFFICIAL))
def test_official_layout_checkpoint_reproduces_the_official_forward(tmp_path, enc_type):
    G = tiny_generator(32)
    path, enc, latent_avg = _official_file(tmp_path, enc_type, G)
    inv = load_inverter(path)
    assert not any(p.requires_grad for p in inv.parameters()) and not inv.training
    x = _images(2, 256)
    with torch.no_grad():
        out = inv.invert(x)
        if not OFFICIAL[enc_type][2]:
            # pSp.forward(x, resize=False, randomize_noise=False, return_latents=True)
            codes = enc(x) + latent_avg.repeat(2, 1, 1)
            assert len(out.steps) == 1
            assert torch.allclose(out.ws, codes, atol=1e-6)
            assert torch.allclose(out.images, G.synthesis(codes, noise_mode="const"), atol=1e-5)
            return
        # ReStyle run_on_batch: avg image, then residual steps fed with face_pool(y_hat)
        avg = _face_pool(G.synthesis(latent_avg[None], noise_mode="const"))[0]
        x_in = torch.cat([x, avg.unsqueeze(0).repeat(2, 1, 1, 1)], 1)
        latent = None
        assert len(out.steps) == 3
        for step in out.steps:
            codes = enc(x_in) + (latent if latent is not None else latent_avg.repeat(2, 1, 1))
            y_hat = G.synthesis(codes, noise_mode="const")
            assert torch.allclose(step.ws, codes, atol=1e-5)
            assert torch.allclose(step.images, y_hat, atol=1e-4)
            latent = codes
            x_in = torch.cat([x, _face_pool(y_hat)], 1)


def test_official_checkpoint_errors(tmp_path):
    G = tiny_generator(32)
    path, _, _ = _official_file(tmp_path, "GradualStyleEncoder", G)
    ckpt = torch.load(path, weights_only=True)

    def save(obj, name):
        p = tmp_path / name
        torch.save(obj, p)
        return p

    bad = dict(ckpt, opts=dict(ckpt["opts"], encoder_type="MysteryEncoder"))
    with pytest.raises(CheckpointError, match="unsupported encoder_type 'MysteryEncoder'"):
        load_inverter(save(bad, "a.pt"))
    bad = dict(ckpt, opts=dict(ckpt["opts"], output_size=1024))
    with pytest.raises(CheckpointError, match="output_size=1024"):
        load_inverter(save(bad, "b.pt"))
    state = dict(ckpt["state_dict"])
    state["encoder.styles.0.linear.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match="styles.0.linear.weight"):
        load_inverter(save(dict(ckpt, state_dict=state), "c.pt"))
    state = dict(ckpt["state_dict"], **{"discriminator.w": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="discriminator"):
        load_inverter(save(dict(ckpt, state_dict=state), "d.pt"))
    with pytest.raises(CheckpointError, match="unknown checkpoint"):
        load_inverter(save({"weights": 1}, "e.pt"))
    with pytest.raises(FileNotFoundError, match="psp_ffhq_encode.pt"):
        load_inverter(tmp_path / "psp_ffhq_encode.pt")


# ----------------------------------------------------------------------------- our export
def test_our_export_round_trips_with_a_generator_reference(tmp_path):
    gen_cfg = {"_target_": "inversion.models.demo_generator", "img_resolution": 32, "channel_max": 16}
    from inversion.models import demo_generator

    G = demo_generator(img_resolution=32, channel_max=16)
    enc_cfg = {"_target_": "inversion.encoders.BackboneEncoder", "num_ws": G.num_ws, "w_dim": G.w_dim,
               "input_size": 32, "channels": [16, 16, 32, 32]}
    enc = E.BackboneEncoder(num_ws=G.num_ws, w_dim=G.w_dim, input_size=32, channels=[16, 16, 32, 32]).eval()
    inv = Inverter(encoder=enc, generator=G, num_iters=2, residual=True, encoder_size=32, resize_mode="area")
    path = save_inverter(inv, tmp_path / "export" / "inverter.pt", encoder_config=enc_cfg, generator_config=gen_cfg)
    size = path.stat().st_size
    assert size < sum(t.numel() * 4 for t in enc.state_dict().values()) + 200_000  # no generator copy inside
    loaded = load_inverter(path)
    assert loaded.num_iters == 2 and loaded.resize_mode == "area"
    x = _images(2, 32)
    with torch.no_grad():
        a, b = inv.invert(x), loaded.invert(x)
    for sa, sb in zip(a.steps, b.steps):
        assert torch.allclose(sa.ws, sb.ws, atol=1e-6) and torch.allclose(sa.images, sb.images, atol=1e-5)
    assert not list(path.parent.glob(".*tmp*"))  # atomic write left no temp file


def test_export_refuses_foreign_targets(tmp_path):
    obj = {"format": "inversion.inverter/v1", "generator": {"_target_": "os.system", "command": "true"},
           "encoder": {"_target_": "inversion.encoders.WEncoder"}, "encoder_state_dict": {},
           "latent_avg": torch.zeros(4), "inverter": {}}
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="only inversion"):
        load_inverter(tmp_path / "x.pt")


def test_inference_benchmark_runs_on_cpu_at_small_size():

    from benchmarks import inference as bench

    rows = bench.main(["--device", "cpu", "--resolution", "32", "--encoder-size", "32", "--width", "0.0625",
                       "--batch-sizes", "1", "--repeats", "1", "--warmup", "0", "--methods", "pSp", "ReStyle-pSp-5"])
    assert [r["method"] for r in rows] == ["pSp", "ReStyle-pSp-5"] and all(r["ms_per_image"] > 0 for r in rows)
