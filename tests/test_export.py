"""inversion.export: our encoders written as official pSp / e4e / ReStyle checkpoints (tiny random models)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from inversion import Inverter, load_inverter, save_inverter
from inversion.cli.export import main
from inversion.encoders import (
    BackboneEncoder,
    Encoder4Editing,
    GradualStyleEncoder,
    ProgressiveBackboneEncoder,
    ResNetBackboneEncoder,
    ResNetProgressiveBackboneEncoder,
    WEncoder,
)
from inversion.export import export_official, load_for_export, official_compatibility
from inversion.models import CheckpointError, Generator

from helpers import tiny_generator

REPO = Path(__file__).resolve().parents[1]
CHANNELS = (4, 4, 8, 8)  # tiny encoder widths (fast on CPU); 256 px inputs, as the official encoders

# Fields of ckpt['opts'] read by each official loader and its inference / editing code (beyond the command-line test
# options those scripts merge in), from reading the official sources:
# pSp (eladrich/pixel2style2pixel): models/psp.py (encoder_type, output_size, checkpoint_path, device, learn_in_w,
# start_from_latent_avg, label_nc, stylegan_weights, n_styles), models/encoders/psp_encoders.py (input_nc, n_styles),
# scripts/inference.py + style_mixing.py (dataset_type, test_batch_size, test_workers, resize_outputs, couple_outputs,
# resize_factors, latent_mask, mix_alpha, n_images, n_outputs_to_generate, data_path, exp_dir),
# configs/transforms_config.py + utils/common.py + datasets/*.py (label_nc, resize_factors).
READ_BY_PSP = {
    "encoder_type", "input_nc", "label_nc", "output_size", "n_styles", "learn_in_w", "start_from_latent_avg",
    "checkpoint_path", "device", "stylegan_weights", "dataset_type", "resize_factors", "test_batch_size",
    "test_workers", "resize_outputs", "couple_outputs", "latent_mask", "mix_alpha", "n_images",
    "n_outputs_to_generate", "data_path", "exp_dir",
}
# e4e (omertov/encoder4editing): models/psp.py (encoder_type, stylegan_size, checkpoint_path, device,
# start_from_latent_avg, stylegan_weights), models/encoders/psp_encoders.py (stylegan_size), utils/model_utils.py
# (checkpoint_path, device), scripts/inference.py + metrics/LEC.py (dataset_type, start_from_latent_avg).
READ_BY_E4E = {"encoder_type", "stylegan_size", "checkpoint_path", "device", "start_from_latent_avg",
               "stylegan_weights", "dataset_type"}
# ReStyle (yuval-alaluf/restyle-encoder): models/psp.py + models/e4e.py (encoder_type, output_size, checkpoint_path,
# device, input_nc, dataset_type, stylegan_weights), models/encoders/*.py (input_nc), scripts/inference_iterative.py,
# utils/inference_utils.py, editing/inference_editing.py, scripts/encoder_bootstrapping_inference.py, predict.py and
# the notebooks (n_iters_per_batch, resize_outputs, dataset_type, test_batch_size, test_workers, n_images, data_path,
# exp_dir, edit_directions, factor_ranges, model_1_checkpoint_path, model_2_checkpoint_path).
READ_BY_RESTYLE = {
    "encoder_type", "input_nc", "output_size", "checkpoint_path", "device", "stylegan_weights", "dataset_type",
    "n_iters_per_batch", "resize_outputs", "test_batch_size", "test_workers", "n_images", "data_path", "exp_dir",
    "edit_directions", "factor_ranges", "model_1_checkpoint_path", "model_2_checkpoint_path",
    "start_from_latent_avg",
}
READ_BY_OUR_LOADER = {"encoder_type", "output_size", "input_nc", "start_from_latent_avg", "n_iters_per_batch"}

# case -> (our class, residual, official encoder_type, fields read)
CASES = {
    "pSp": (GradualStyleEncoder, False, "GradualStyleEncoder", READ_BY_PSP),
    "pSp-W": (WEncoder, False, "BackboneEncoderUsingLastLayerIntoW", READ_BY_PSP),
    "e4e": (Encoder4Editing, False, "Encoder4Editing", READ_BY_E4E),
    "ReStyle-pSp": (BackboneEncoder, True, "BackboneEncoder", READ_BY_RESTYLE),
    "ReStyle-e4e": (ProgressiveBackboneEncoder, True, "ProgressiveBackboneEncoder", READ_BY_RESTYLE),
    "ReStyle-pSp-ResNet": (ResNetBackboneEncoder, True, "ResNetBackboneEncoder", READ_BY_RESTYLE),
    "ReStyle-e4e-ResNet": (ResNetProgressiveBackboneEncoder, True, "ResNetProgressiveBackboneEncoder",
                           READ_BY_RESTYLE),
}


def rosinality_generator_shapes(size: int, style_dim: int, n_mlp: int, channels: dict[int, int]) -> dict:
    """Key -> shape of rosinality's ``Generator(size, style_dim, n_mlp)`` state dict (stylegan2-pytorch model.py),
    written out from its module tree: mapping ``style.{1..n_mlp}``, ``input``, ``conv1`` / ``to_rgb1``, one ``noises``
    buffer per conv layer, then per resolution an up-sampling StyledConv (with ``conv.blur``), a StyledConv and a
    ToRGB (with ``upsample``). Official files store the mapping's first layer as style_dim x style_dim."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(1, n_mlp + 1):
        shapes[f"style.{i}.weight"] = (style_dim, style_dim)
        shapes[f"style.{i}.bias"] = (style_dim,)
    shapes["input.input"] = (1, channels[4], 4, 4)

    def styled(prefix, cin, cout, up):
        shapes.update({f"{prefix}.conv.weight": (1, cout, cin, 3, 3), f"{prefix}.conv.modulation.weight":
                       (cin, style_dim), f"{prefix}.conv.modulation.bias": (cin,), f"{prefix}.noise.weight": (1,),
                       f"{prefix}.activate.bias": (cout,)})
        if up:
            shapes[f"{prefix}.conv.blur.kernel"] = (4, 4)

    def to_rgb(prefix, cin, up):
        shapes.update({f"{prefix}.conv.weight": (1, 3, cin, 1, 1), f"{prefix}.conv.modulation.weight":
                       (cin, style_dim), f"{prefix}.conv.modulation.bias": (cin,), f"{prefix}.bias": (1, 3, 1, 1)})
        if up:
            shapes[f"{prefix}.upsample.kernel"] = (4, 4)

    styled("conv1", channels[4], channels[4], False)
    to_rgb("to_rgb1", channels[4], False)
    log_size = size.bit_length() - 1
    for i in range((log_size - 2) * 2 + 1):
        r = 2 ** ((i + 5) // 2)
        shapes[f"noises.noise_{i}"] = (1, 1, r, r)
    cin = channels[4]
    for i in range(3, log_size + 1):
        cout = channels[2**i]
        styled(f"convs.{2 * (i - 3)}", cin, cout, True)
        styled(f"convs.{2 * (i - 3) + 1}", cout, cout, False)
        to_rgb(f"to_rgbs.{i - 3}", cout, True)
        cin = cout
    return shapes


def _inverter(cls, residual, G, seed=0, **kw):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = cls(num_ws=G.num_ws, w_dim=G.w_dim, in_channels=6 if residual else 3, input_size=256,
                  channels=CHANNELS, **kw)
        with torch.no_grad():  # non-trivial BatchNorm statistics, so eval-mode inference uses them
            for m in enc.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.normal_(0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
    inv = Inverter(encoder=enc, generator=G, residual=residual, num_iters=2 if residual else 1,
                   start_from_latent_avg=True)
    inv.encoder_config = {"_target_": f"inversion.encoders.{cls.__name__}", "num_ws": G.num_ws, "w_dim": G.w_dim,
                          "in_channels": 6 if residual else 3, "input_size": 256, "channels": list(CHANNELS), **kw}
    return inv.eval().requires_grad_(False)


def _images(n=1, seed=0):
    return torch.rand(n, 3, 256, 256, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _assert_same_inversion(a: Inverter, b: Inverter, x: torch.Tensor):
    with torch.no_grad():
        ra, rb = a.invert(x), b.invert(x)
    assert len(ra.steps) == len(rb.steps)
    for sa, sb in zip(ra.steps, rb.steps):
        assert torch.equal(sa.ws, sb.ws)
        assert torch.equal(sa.images, sb.images)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tiny models are as fast on one thread, and do not stall when other processes share the CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def generator():
    return tiny_generator(32)


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, generator, tmp_path_factory):
    cls, residual, enc_type, read = CASES[request.param]
    inv = _inverter(cls, residual, generator)
    path = tmp_path_factory.mktemp("export") / f"{request.param}.pt"
    out = export_official(inv, path, allow_nonstandard=True)
    ckpt = torch.load(out, map_location="cpu", weights_only=True)  # plain tensors and data only (torch>=2.6 default)
    return SimpleNamespace(case=request.param, inv=inv, path=out, ckpt=ckpt, enc_type=enc_type, read=read,
                           residual=residual)


def test_round_trip_gives_identical_ws_and_images(exported):
    assert exported.path.is_file()
    back = load_inverter(exported.path)
    assert type(back.encoder) is type(exported.inv.encoder)
    assert back.residual == exported.residual and back.num_iters == exported.inv.num_iters
    assert torch.equal(back.latent_avg, exported.inv.latent_avg)
    _assert_same_inversion(exported.inv, back, _images())


def test_keys_are_what_the_official_classes_strictly_load(exported, generator):
    ckpt = exported.ckpt
    assert set(ckpt) == {"state_dict", "opts", "latent_avg"}
    sd = ckpt["state_dict"]
    assert {k.split(".")[0] for k in sd} == {"encoder", "decoder"}
    enc = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    ours = exported.inv.encoder.state_dict()
    assert set(enc) == set(ours)
    assert all(torch.equal(enc[k], ours[k]) for k in ours)
    dec = {k[len("decoder."):]: tuple(v.shape) for k, v in sd.items() if k.startswith("decoder.")}
    assert "w_avg" not in dec
    assert dec == rosinality_generator_shapes(32, 16, 2, {4: 16, 8: 16, 16: 16, 32: 16})
    assert all(v.dtype == torch.float32 for k, v in sd.items() if k.startswith("decoder."))
    w_rows = 1 if exported.case == "pSp-W" else generator.num_ws  # pSp's learn_in_w keeps latent_avg [1, w_dim]
    assert tuple(ckpt["latent_avg"].shape) == (w_rows, generator.w_dim)
    assert torch.equal(ckpt["latent_avg"], exported.inv.latent_avg[:w_rows])


def test_opts_hold_every_field_the_official_code_reads(exported, generator):
    opts = exported.ckpt["opts"]
    missing = (exported.read | READ_BY_OUR_LOADER - {"n_iters_per_batch"}) - set(opts)
    assert not missing, missing
    assert all(v is None or isinstance(v, (str, int, float, bool, list)) for v in opts.values())
    assert opts["encoder_type"] == exported.enc_type
    assert opts["input_nc"] == (6 if exported.residual else 3)
    assert opts["output_size"] == 32
    assert opts["checkpoint_path"] == str(exported.path)
    assert opts["device"] == "cuda:0" and opts["dataset_type"] == "ffhq_encode" and opts["label_nc"] == 0
    assert opts["start_from_latent_avg"] is True
    assert opts["test_batch_size"] == 2 and opts["test_workers"] == 2
    if exported.case.startswith("pSp"):
        assert opts["n_styles"] == generator.num_ws
        assert opts["learn_in_w"] is (exported.case == "pSp-W")
    if exported.case == "e4e":
        assert opts["stylegan_size"] == 32
    if exported.residual:
        assert opts["n_iters_per_batch"] == 2 and opts["resize_outputs"] is False


def test_psp_without_latent_avg_start_round_trips(generator, tmp_path):
    inv = _inverter(GradualStyleEncoder, False, generator, seed=4)
    inv.start_from_latent_avg = False
    path = export_official(inv, tmp_path / "psp.pt", allow_nonstandard=True)
    assert torch.load(path, weights_only=True)["opts"]["start_from_latent_avg"] is False
    back = load_inverter(path)
    assert back.start_from_latent_avg is False
    _assert_same_inversion(inv, back, _images())


def test_rosinality_key_scheme_matches_config_f():
    with torch.device("meta"):
        G = Generator()
    ours = {k: tuple(v.shape) for k, v in G.state_dict().items() if k != "w_avg"}
    channels = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
    assert ours == rosinality_generator_shapes(1024, 512, 8, channels)


@pytest.mark.parametrize("size", [1024, 256])
@pytest.mark.parametrize("case", list(CASES))
def test_official_size_models_pass_the_compatibility_check(case, size):
    cls, residual, _, _ = CASES[case]
    with torch.device("meta"):
        inv = Inverter(encoder=cls(num_ws=2 * size.bit_length() - 4, in_channels=6 if residual else 3),
                       generator=Generator(img_resolution=size), residual=residual)
    assert official_compatibility(inv) == ([], [])


def test_other_shapes_are_refused_by_default_with_the_differences(generator, tmp_path):
    inv = _inverter(GradualStyleEncoder, False, generator)
    with pytest.raises(ValueError) as e:
        export_official(inv, tmp_path / "x.pt")
    msg = str(e.value)
    assert "x.pt" in msg and "pixel2style2pixel" in msg and "w_dim=16" in msg and "--allow-nonstandard" in msg
    assert "encoder (GradualStyleEncoder)" in msg
    assert not (tmp_path / "x.pt").exists()


def test_a_file_neither_reader_could_load_is_not_written(generator, tmp_path):
    enc = GradualStyleEncoder(num_ws=8, w_dim=16, input_size=32, channels=CHANNELS)  # heads for 32 px inputs
    inv = Inverter(encoder=enc, generator=generator, encoder_size=32)
    with pytest.raises(ValueError, match=r"small.pt: not written.*encoder input size 32.*load_inverter could not"):
        export_official(inv, tmp_path / "small.pt", allow_nonstandard=True)
    assert not (tmp_path / "small.pt").exists()


def test_unsupported_encoder_or_mode_or_dataset_is_a_clear_error(generator, tmp_path):
    class MyEncoder(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 8, 16)

    inv = Inverter(encoder=MyEncoder(), generator=generator)
    with pytest.raises(ValueError, match="no class for MyEncoder"):
        export_official(inv, tmp_path / "a.pt", allow_nonstandard=True)
    residual_psp = _inverter(GradualStyleEncoder, True, generator)  # ReStyle-style training of a pSp encoder
    with pytest.raises(ValueError, match="single-pass encoder, but this inverter is residual"):
        export_official(residual_psp, tmp_path / "b.pt", allow_nonstandard=True)
    with pytest.raises(ValueError, match="dataset_type 'cats_encode'.*ReStyle-pSp"):
        export_official(_inverter(BackboneEncoder, True, generator), tmp_path / "c.pt", dataset_type="cats_encode",
                        allow_nonstandard=True)
    assert not list(tmp_path.iterdir())


def test_e4e_mid_schedule_zeroes_unused_delta_heads(generator, tmp_path):
    inv = _inverter(Encoder4Editing, False, generator, progressive_stage=2)
    with pytest.warns(UserWarning, match=r"progressive stage 2 of 8.*\[3, 4, 5, 6, 7\]"):
        path = export_official(inv, tmp_path / "e4e.pt", allow_nonstandard=True)
    sd = torch.load(path, weights_only=True)["state_dict"]
    assert not sd["encoder.styles.3.linear.weight"].any() and not sd["encoder.styles.7.linear.bias"].any()
    assert sd["encoder.styles.2.linear.weight"].any()
    back = load_inverter(path)
    assert back.encoder.progressive_stage == 8  # the official Inference stage: every delta
    _assert_same_inversion(inv, back, _images())
    assert inv.encoder.styles[3].linear.weight.any()  # the model itself is untouched


def _rosinality_file(G, path):
    torch.save({"g_ema": {k: v for k, v in G.state_dict().items() if k != "w_avg"}, "latent_avg": G.w_avg}, path)
    return path


def _our_export(inv, path, generator_file):
    return save_inverter(inv, path, encoder_config=inv.encoder_config,
                         generator_config={"_target_": "inversion.models.load_generator", "path": str(generator_file)})


def test_cli_exports_our_inverter_pt(generator, tmp_path):
    inv = _inverter(ProgressiveBackboneEncoder, True, generator, seed=3)
    gen_file = _rosinality_file(generator, tmp_path / "moved.pt")
    ours = _our_export(inv, tmp_path / "run" / "export" / "inverter.pt", tmp_path / "gone" / "stylegan2.pt")
    out = tmp_path / "official" / "restyle.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "inversion", "export", "--to", "official", str(ours), str(out), "--generator",
         str(gen_file), "--allow-nonstandard", "--dataset-type", "church_encode"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "ReStyle-e4e" in proc.stderr and "encoder_type=ProgressiveBackboneEncoder" in proc.stderr
    ckpt = torch.load(out, weights_only=True)
    opts = ckpt["opts"]
    assert opts["stylegan_weights"] == str(gen_file) and opts["dataset_type"] == "church_encode"
    assert opts["exp_dir"] == str(tmp_path / "run") and opts["checkpoint_path"] == str(out.resolve())
    assert opts["encoder_type"] == "ProgressiveBackboneEncoder" and opts["n_iters_per_batch"] == 2
    expected = {**{f"encoder.{k}": v for k, v in inv.encoder.state_dict().items()},
                **{f"decoder.{k}": v for k, v in generator.state_dict().items() if k != "w_avg"}}
    assert set(ckpt["state_dict"]) == set(expected)
    assert all(torch.equal(v, expected[k]) for k, v in ckpt["state_dict"].items())
    assert torch.equal(ckpt["latent_avg"], inv.latent_avg)


def test_lightning_checkpoint_uses_the_runs_export_settings(generator, tmp_path, capsys):
    inv = _inverter(Encoder4Editing, False, generator, seed=1)
    gen_file = _rosinality_file(generator, tmp_path / "g.pt")
    _our_export(inv, tmp_path / "run" / "export" / "inverter.pt", gen_file)
    trained = _inverter(Encoder4Editing, False, generator, seed=2)  # later weights, only in the Lightning file
    state = {f"inverter.encoder.{k}": v for k, v in trained.encoder.state_dict().items()}
    state["inverter.latent_avg"] = trained.latent_avg + 0.5
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.4.0", "global_step": 7,
                "e4e": {"progressive_stage": 8}}, ckpt)
    assert main(["--to", "official", str(ckpt), str(tmp_path / "e4e.pt"), "--allow-nonstandard"]) == 0
    back = load_inverter(tmp_path / "e4e.pt")
    assert torch.equal(back.latent_avg, trained.latent_avg + 0.5)
    for k, v in trained.encoder.state_dict().items():
        assert torch.equal(back.encoder.state_dict()[k], v), k
    # without the run's export/inverter.pt the settings are unknown
    lone = tmp_path / "elsewhere" / "checkpoints" / "last.ckpt"
    lone.parent.mkdir(parents=True)
    lone.write_bytes(ckpt.read_bytes())
    assert main(["--to", "official", str(lone), str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "Lightning checkpoint" in err and str(tmp_path / "elsewhere" / "export" / "inverter.pt") in err


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    assert main(["--to", "official", str(tmp_path / "nope.pt"), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert "nope.pt" in err and "not found" in err and "inverter.pt" in err
    torch.save({"model": {}}, tmp_path / "other.pt")
    assert main(["--to", "official", str(tmp_path / "other.pt"), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert "other.pt" in err and "unknown checkpoint" in err and "Lightning" in err
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        load_for_export(tmp_path / "text.pt")
    with pytest.raises(SystemExit):
        main(["--to", "onnx", "a.pt", "b.pt"])
    assert not (tmp_path / "out.pt").exists()


def test_official_input_re_exports_unchanged(generator, tmp_path):
    first = export_official(_inverter(GradualStyleEncoder, False, generator), tmp_path / "a.pt", allow_nonstandard=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inv, _ = load_for_export(first)
        second = export_official(inv, tmp_path / "b.pt", allow_nonstandard=True)
    a, b = torch.load(first, weights_only=True), torch.load(second, weights_only=True)
    assert set(a["state_dict"]) == set(b["state_dict"])
    assert all(torch.equal(v, a["state_dict"][k]) for k, v in b["state_dict"].items())
    assert torch.equal(a["latent_avg"], b["latent_avg"])
    assert {k: v for k, v in a["opts"].items() if k != "checkpoint_path"} == {
        k: v for k, v in b["opts"].items() if k not in ("checkpoint_path", "exported_from")}
