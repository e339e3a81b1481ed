"""StyleGAN3 generator: the fast filtered leaky ReLU against its literal reference, the model against an independent
oracle of NVIDIA's maths (tests/sg3_oracle.py) for configs T and R, and NVIDIA's state-dict layout."""

from __future__ import annotations

import itertools
import math
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from sg3_oracle import oracle_layers, oracle_mapping, oracle_synthesis
from test_ada_pickle import _DUMP, Evil, FakeEasyDict, dump_nvidia_pickle, evil_module_src

from inversion.models import load_generator
from inversion.models.filtered_lrelu import design_lowpass_filter, filtered_lrelu, filtered_lrelu_ref, input_trim
from inversion.models.loading import stylegan3_from_pickle_data
from inversion.models.safe_unpickle import read_ada_pickle
from inversion.models.stylegan3 import StyleGAN3Generator

# Small 64 px models; channel_base / channel_max chosen so the per-layer channel counts vary (24 ... 8).
T_KW = dict(z_dim=16, w_dim=16, img_resolution=64, img_channels=3, channel_base=512, channel_max=24)
R_KW = dict(T_KW, channel_base=1024, conv_kernel=1, use_radial_filters=True)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small ops: one intra-op thread is as fast here and immune to spin-waiting on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomize(G: StyleGAN3Generator, seed: int) -> StyleGAN3Generator:
    """Random weights, magnitude_ema in [0.2, 3.2], a random w_avg and a rotation + translation input transform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            scale = 0.5 if name.endswith("bias") else 1.0
            if name.startswith("mapping.fc"):
                scale *= 100  # the stored weights of lr-multiplier-0.01 layers are ~100x larger (NVIDIA's init)
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        for name, b in G.named_buffers():
            if name.endswith("magnitude_ema"):
                b.copy_(torch.rand([], generator=g) * 3 + 0.2)
        G.mapping.w_avg.copy_(torch.randn(G.w_dim, generator=g))
        a, tx, ty = 0.4, 0.15, -0.1
        G.synthesis.input.transform.copy_(torch.tensor(
            [[math.cos(a), -math.sin(a), tx], [math.sin(a), math.cos(a), ty], [0.0, 0.0, 1.0]]))
    return G.eval()


# --------------------------------------------------------------------------- filtered leaky ReLU


@pytest.mark.parametrize("up,down", list(itertools.product([1, 2, 4], [1, 2, 4])))
def test_filtered_lrelu_fast_matches_reference(up, down):
    g = torch.Generator().manual_seed(10 * up + down)
    x = torch.randn(2, 3, 26, 29, generator=g)
    b = torch.randn(3, generator=g)
    rand2d = torch.rand(5, 7, generator=g)
    fus = [None] if up == 1 else [None, design_lowpass_filter(6 * up, 3.0, 2.0, 8 * up), rand2d / rand2d.sum()]
    fds = [None] if down == 1 else [None, design_lowpass_filter(5 * down, 3.0, 2.0, 8 * down),
                                    design_lowpass_filter(5 * down, 3.0, 2.0, 8 * down, radial=True)]
    pads = [(9, 8, 7, 10), (1 - 2 * up, -3 * up, 3, -up), (0, 0, 0, 0)]  # symmetric, cropping, asymmetric x / y
    for fu, fd, pad, separable in itertools.product(fus, fds, pads, [False, True]):
        kw = dict(up=up, down=down, padding=pad, gain=1.7, slope=0.2, clamp=1.5)
        ref = filtered_lrelu_ref(x, fu, fd, b, **kw)
        out = filtered_lrelu(x, fu, fd, b, separable=separable, **kw)
        assert out.shape == ref.shape, (fu is None, fd is None, pad)
        assert (out - ref).abs().max().item() < 1e-5, (up, down, pad, separable)
    assert (filtered_lrelu(x, None, None, b, clamp=1.0, slope=1, gain=1) - (x + b[:, None, None]).clamp(-1, 1)).abs(
    ).max() < 1e-6


def test_filtered_lrelu_gradients_and_input_trim():
    g = torch.Generator().manual_seed(0)
    fu, fd = design_lowpass_filter(24, 2.0, 3.0, 64), design_lowpass_filter(12, 4.0, 3.0, 64, radial=True)
    kw = dict(up=4, down=2, padding=[-6, -9, -6, -9], gain=math.sqrt(2), slope=0.2, clamp=3.0)
    x = (torch.randn(2, 4, 38, 38, generator=g) * 2).requires_grad_()
    b = torch.randn(4, generator=g).requires_grad_()
    ref = filtered_lrelu_ref(x, fu, fd, b, **kw)
    gx_ref, gb_ref = torch.autograd.grad(ref.square().sum(), [x, b])
    out = filtered_lrelu(x, fu, fd, b, **kw)
    gx, gb = torch.autograd.grad(out.square().sum(), [x, b])
    assert (gx - gx_ref).abs().max() < 1e-4 and (gb - gb_ref).abs().max() < 1e-3
    lo, hi = input_trim(38, 4, 24, -6, -9)
    assert (lo, hi) == (2, 35) and gx[:, :, :lo].abs().max() == 0 and gx[:, :, hi + 1 :].abs().max() == 0
    trimmed = filtered_lrelu(x[:, :, lo : hi + 1, lo : hi + 1], fu, fd, b, **dict(
        kw, padding=[-6 + lo * 4, -9 + (37 - hi) * 4] * 2))
    assert (trimmed - out).abs().max() < 1e-6


def test_lowpass_design_matches_scipy():
    signal = pytest.importorskip("scipy.signal")
    special = pytest.importorskip("scipy.special")
    import numpy as np

    for numtaps, cutoff, width, fs in [(12, 2.0, 4.5, 32), (24, 5.66, 5.3, 128), (12, 32.0, 10.4, 128)]:
        ours = design_lowpass_filter(numtaps, cutoff, width, fs)
        theirs = torch.as_tensor(signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs), dtype=torch.float32)
        assert (ours - theirs).abs().max() <= 1e-7
        x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs  # NVIDIA's radial (jinc) filter, with scipy's J1
        r = np.hypot(*np.meshgrid(x, x))
        f = special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
        w = np.kaiser(numtaps, signal.kaiser_beta(signal.kaiser_atten(numtaps, width / (fs / 2))))
        f *= np.outer(w, w)
        radial = design_lowpass_filter(numtaps, cutoff, width, fs, radial=True)
        assert (radial - torch.as_tensor(f / f.sum(), dtype=torch.float32)).abs().max() <= 1e-7
    assert design_lowpass_filter(1, 2.0, 1.0, 16) is None


# --------------------------------------------------------------------------- model vs oracle


@pytest.mark.parametrize("config", ["T", "R"])
def test_generator_matches_oracle(config):
    kw = dict(T_KW) if config == "T" else dict(R_KW, conv_clamp=0.5)  # R: a low clamp that really clamps
    torch.manual_seed(0)
    G = _randomize(StyleGAN3Generator(**kw), seed=1 if config == "T" else 2)
    sd = {k: v.detach() for k, v in G.state_dict().items()}
    z = torch.randn(2, kw["z_dim"], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for psi, cutoff in [(1.0, None), (0.7, None), (0.5, 8)]:
            ws = G.mapping(z, None, truncation_psi=psi, truncation_cutoff=cutoff)
            assert ws.shape == (2, 16, kw["w_dim"])
            assert (ws - oracle_mapping(sd, kw, z, None, psi, cutoff)).abs().max() < 1e-5
        ws = G.mapping(z, truncation_psi=0.7)
        ws = ws + 0.3 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(4))  # distinct per layer
        img = G.synthesis(ws, noise_mode="const")
        ref = oracle_synthesis(sd, kw, ws)
        assert img.shape == ref.shape == (2, 3, 64, 64)
        scale = ref.abs().max().item()
        assert scale > 1e-2
        assert (img - ref).abs().max().item() < 1e-4 * max(scale, 1.0)
        assert (G.set_separable_filters(True).synthesis(ws) - img).abs().max() < 1e-5
        assert (G(z, truncation_psi=0.7) - G.synthesis(G.mapping(z, truncation_psi=0.7))).abs().max() == 0
        if config == "R":  # the clamp is active in this test
            for name in G.synthesis.layer_names:
                getattr(G.synthesis, name).conv_clamp = None
            assert (G.synthesis(ws) - img).abs().max() > 1e-3


def test_conditional_mapping_uses_embedding():
    torch.manual_seed(0)
    kw = dict(T_KW, c_dim=5)
    G = _randomize(StyleGAN3Generator(**kw), seed=5)
    sd = G.state_dict()
    assert sd["mapping.embed.weight"].shape == (16, 5) and sd["mapping.fc0.weight"].shape == (16, 32)
    z = torch.randn(3, 16)
    c0, c1 = torch.eye(5)[[0, 1, 2]], torch.eye(5)[[3, 3, 4]]
    with torch.no_grad():
        ws0, ws1 = G.mapping(z, c0), G.mapping(z, c1)
        assert (ws0 - oracle_mapping(sd, kw, z, c0)).abs().max() < 1e-5
        assert ((ws0 - ws1).abs().amax(dim=2) > 1e-2 * ws0.abs().amax(dim=2)).all()  # every sample, every layer
    with pytest.raises(ValueError):
        G.mapping(z)
    with pytest.raises(TypeError):
        G.mapping(z, 0.7)  # the StyleGAN2-style positional psi is refused


# --------------------------------------------------------------------------- layout and interface

# Derived from NVIDIA's networks_stylegan3.py for T_KW / R_KW: 5 mapping entries (w_avg, fc0/fc1 weight + bias),
# 6 input entries (weight, transform, freqs, phases, affine.weight/bias), 7 per layer L0..L13 (weight, bias,
# magnitude_ema, up_filter, down_filter, affine.weight/bias) and 5 for the toRGB L14 (no filters): 114.
T_NAMES = ["L0_36_24", "L1_36_24", "L2_36_24", "L3_36_24", "L4_52_24", "L5_52_24", "L6_52_24", "L7_52_24",
           "L8_84_20", "L9_84_16", "L10_84_13", "L11_84_10", "L12_84_8", "L13_64_8", "L14_64_3"]
R_NAMES = T_NAMES[:8] + ["L8_84_24", "L9_84_24", "L10_84_24", "L11_84_20", "L12_84_16", "L13_64_16", "L14_64_3"]
T_SHAPES = {
    "mapping.w_avg": (16,), "mapping.fc0.weight": (16, 16), "mapping.fc1.bias": (16,),
    "synthesis.input.weight": (24, 24), "synthesis.input.affine.weight": (4, 16), "synthesis.input.transform": (3, 3),
    "synthesis.input.freqs": (24, 2), "synthesis.input.phases": (24,),
    "synthesis.L0_36_24.weight": (24, 24, 3, 3), "synthesis.L0_36_24.magnitude_ema": (),
    "synthesis.L0_36_24.up_filter": (12,), "synthesis.L0_36_24.down_filter": (12,),
    "synthesis.L4_52_24.up_filter": (24,), "synthesis.L8_84_20.weight": (20, 24, 3, 3),
    "synthesis.L10_84_13.affine.weight": (16, 16), "synthesis.L13_64_8.down_filter": (12,),
    "synthesis.L14_64_3.weight": (3, 8, 1, 1), "synthesis.L14_64_3.bias": (3,),
    "synthesis.L14_64_3.affine.bias": (8,), "synthesis.L14_64_3.magnitude_ema": (),
}
R_SHAPES = {
    "synthesis.L0_36_24.weight": (24, 24, 1, 1), "synthesis.L0_36_24.down_filter": (12, 12),
    "synthesis.L8_84_24.up_filter": (24,), "synthesis.L11_84_20.down_filter": (12, 12),
    "synthesis.L12_84_16.down_filter": (12,), "synthesis.L13_64_16.down_filter": (12,),
    "synthesis.L14_64_3.weight": (3, 16, 1, 1),
}


@pytest.mark.parametrize("config", ["T", "R"])
def test_state_dict_layout(config):
    G = StyleGAN3Generator(**(T_KW if config == "T" else R_KW))
    names, shapes = (T_NAMES, T_SHAPES) if config == "T" else (R_NAMES, R_SHAPES)
    sd = G.state_dict()
    assert len(sd) == 114 and G.synthesis.layer_names == names
    assert [L["name"] for L in oracle_layers(T_KW if config == "T" else R_KW)[1:]] == names
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    assert not any(k.startswith("synthesis.L14_64_3.") and "filter" in k for k in sd)
    assert all(v.dtype == torch.float32 for v in sd.values())
    G2 = StyleGAN3Generator(**(T_KW if config == "T" else R_KW))
    G2.load_state_dict(sd, strict=True)


def test_interface():
    torch.manual_seed(0)
    G = _randomize(StyleGAN3Generator(**T_KW), seed=7)
    assert (G.z_dim, G.c_dim, G.w_dim, G.num_ws, G.img_resolution, G.img_channels) == (16, 0, 16, 16, 64, 3)
    assert G.w_avg is G.mapping.w_avg
    z = torch.randn(2, 16)
    ws = G.mapping(z)
    assert (G.truncate(ws, 0.6, 4) - G.mapping(z, truncation_psi=0.6, truncation_cutoff=4)).abs().max() < 1e-6
    ws.requires_grad_()
    img = G.synthesis(ws, noise_mode="random", force_fp32=True, noise=None)
    (grad,) = torch.autograd.grad(img.square().mean(), ws)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    before = G.synthesis.L3_36_24.magnitude_ema.clone()
    with torch.no_grad():
        G.synthesis(ws, update_emas=True)
    assert G.synthesis.L3_36_24.magnitude_ema != before
    with pytest.raises(ValueError):
        G.synthesis(ws, noise_mode="bogus")


# --------------------------------------------------------------------------- NVIDIA pickles

NV_CLASS = {"StyleGAN3Generator": "Generator"}  # our other module classes carry NVIDIA's names already


class _Record:
    """Pickles like a ``torch_utils.persistence`` object: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, class_name: str, state: dict):
        self.class_name, self.state = class_name, state

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=_DUMP["module_src"], class_name=self.class_name,
                    state=self.state)
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,), None)


def _records(m: torch.nn.Module, init_kwargs: dict | None = None) -> _Record:
    """``m`` as NVIDIA's pickles hold a network: persistent records with parameters, buffers, sub-modules, plain
    attributes (numpy arrays too, as NVIDIA's layers keep them) and, at the top, ``_init_kwargs``."""
    state = {"training": False, "_parameters": dict(m._parameters), "_buffers": dict(m._buffers),
             "_non_persistent_buffers_set": set(),
             "_modules": {k: _records(v) for k, v in m._modules.items() if v is not None}}
    state.update({k: v for k, v in vars(m).items() if not k.startswith("_") and isinstance(v, (bool, int, float))})
    if hasattr(m, "in_size"):
        state["in_size"] = np.asarray([m.in_size, m.in_size])
    if init_kwargs is not None:
        state["_init_args"], state["_init_kwargs"] = (), FakeEasyDict(init_kwargs)
    return _Record(NV_CLASS.get(type(m).__name__, type(m).__name__), state)


def _nvidia_kwargs(kw: dict, c_dim: int = 0) -> dict:
    """The ``_init_kwargs`` NVIDIA's train.py gives a StyleGAN3 ``Generator``."""
    out = dict(z_dim=kw["z_dim"], c_dim=c_dim, w_dim=kw["w_dim"], img_resolution=kw["img_resolution"],
               img_channels=3, mapping_kwargs=FakeEasyDict(num_layers=2), channel_base=kw["channel_base"],
               channel_max=kw["channel_max"], magnitude_ema_beta=0.999, num_fp16_res=4, conv_clamp=256)
    if kw.get("use_radial_filters"):
        out.update(conv_kernel=1, use_radial_filters=True)
    return out


def _write(tmp_path, kw: dict, c_dim: int = 0, seed: int = 5, **extra):
    nv = _nvidia_kwargs(kw, c_dim)
    torch.manual_seed(seed)
    G = _randomize(StyleGAN3Generator(**{k: v for k, v in nv.items()}), seed)
    marker = tmp_path / "module_src_was_executed"
    data = dict(G=_records(G, nv), D=None, G_ema=_records(G, nv), training_set_kwargs=None, **extra)
    path = dump_nvidia_pickle(tmp_path / "network-snapshot-000000.pkl", data, evil_module_src(marker))
    return path, G, nv, marker


@pytest.mark.parametrize("config", ["T", "R"])
def test_load_generator_reads_stylegan3_pickles(tmp_path, config):
    kw = T_KW if config == "T" else R_KW
    path, G_src, nv, marker = _write(tmp_path, kw)
    G = load_generator(path)
    assert not marker.exists(), "module_src must never run"
    assert isinstance(G, StyleGAN3Generator) and not G.training
    assert not any(p.requires_grad for p in G.parameters())
    sd = {k: v.detach() for k, v in G_src.state_dict().items()}
    assert all(torch.equal(G.state_dict()[k], v) for k, v in sd.items())
    ok = dict(nv, mapping_kwargs=dict(nv["mapping_kwargs"]))
    z = torch.randn(2, kw["z_dim"], generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        for psi in (1.0, 0.7):  # NVIDIA's maths (the independent oracle) on the pickle's tensors
            ws = G.mapping(z, truncation_psi=psi)
            assert (ws - oracle_mapping(sd, ok, z, None, psi, None)).abs().max() < 1e-5
            ref = oracle_synthesis(sd, ok, ws)
            assert (G.synthesis(ws) - ref).abs().max() < 1e-4 * max(ref.abs().max().item(), 1.0)


def test_conditional_stylegan3_pickles_load_and_c_matters(tmp_path):
    path, _, _, _ = _write(tmp_path, T_KW, c_dim=3)
    G = load_generator(path)
    assert G.c_dim == 3 and "mapping.embed.weight" in G.state_dict()
    z = torch.randn(1, G.z_dim)
    c0, c1 = torch.tensor([[1.0, 0, 0]]), torch.tensor([[0, 1.0, 0]])
    with torch.no_grad():
        a, b = G(z, c0), G(z, c1)
    assert (a - b).abs().max() > 1e-3


def test_unsupported_options_and_code_in_stylegan3_pickles(tmp_path):
    path, G, nv, marker = _write(tmp_path, T_KW)
    ada = read_ada_pickle(path)
    ada["init_kwargs"]["fancy_option"] = 1
    with pytest.raises(NotImplementedError, match="fancy_option"):
        stylegan3_from_pickle_data(ada, "x.pkl")
    ada = read_ada_pickle(path)
    ada["init_kwargs"]["mapping_kwargs"]["embed_features"] = 8
    with pytest.raises(NotImplementedError, match="embed_features"):
        stylegan3_from_pickle_data(ada, "x.pkl")
    pwned = tmp_path / "pwned"
    evil = dump_nvidia_pickle(tmp_path / "evil.pkl", dict(G_ema=_records(G, nv), x=Evil(os.system, f"touch {pwned}")),
                              evil_module_src(marker))
    with pytest.raises(pickle.UnpicklingError, match="system"):
        load_generator(evil)
    assert not pwned.exists() and not marker.exists()


# --------------------------------------------------------------------------- encoders over StyleGAN3


def _demo_sg3_train_config(tmp_path, steps: int, *overrides: str):
    """The demo experiment at 32 px against the seeded StyleGAN3 (``generator=demo_sg3``), ``steps`` steps, a
    2-step ReStyle encoder (``overrides`` pick it and the module)."""
    from inversion.config import compose

    return compose("train", [
        "experiment=demo", "generator=demo_sg3", *overrides, "encoder.net.input_size=32",
        "encoder.net.channels=[16,16,32,32]", "encoder.num_iters=2", "generator.img_resolution=32",
        "generator.channel_max=16", "module.loss_size=32", "data.batch_size=2", f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}", "trainer.limit_val_batches=1", "module.image_every_n_steps=0",
        f"callbacks.checkpoint.every_n_train_steps={steps}", f"output_dir={tmp_path}"])


def test_restyle_trains_against_a_tiny_stylegan3(tmp_path):
    """A demo-size ReStyle-pSp (2 steps per batch) trains against a seeded 32 px StyleGAN3-T (num_ws 16) through
    the normal train.py path; over 50 steps the validation L2 falls (measured 0.062 -> 0.055 on CPU)."""
    from inversion import load_inverter
    from inversion.models import demo_stylegan3
    from inversion.training import train

    summary = train(_demo_sg3_train_config(tmp_path, 50, "encoder=restyle_psp"))
    assert summary["global_step"] == 50 and summary["nonfinite_steps"] == 0
    assert summary["val_l2_end"] < 0.95 * summary["val_l2_start"], summary
    inv = load_inverter(summary["export"])  # the export names the seeded generator: rebuilt exactly
    assert isinstance(inv.generator, StyleGAN3Generator)
    ref = demo_stylegan3(img_resolution=32, channel_max=16)
    assert all(torch.equal(a, b) for a, b in zip(inv.generator.state_dict().values(), ref.state_dict().values()))
    out = inv.invert(torch.zeros(1, 3, 32, 32))
    assert out.ws.shape == (1, 16, 64) and out.images.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("arch", ["t", "r"])
def test_generator_configs_for_the_released_pickles(tmp_path, arch):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from inversion.config import compose
    from inversion.models import CheckpointError

    cfg = compose("sample", [f"generator=stylegan3_{arch}_ffhq_1024"])
    assert (cfg.generator.img_resolution, cfg.generator.num_ws, cfg.generator.w_dim) == (1024, 16, 512)
    with pytest.raises((FileNotFoundError, InstantiationException), match=f"paths.stylegan3_{arch}_ffhq"):
        instantiate(cfg.generator)
    path, _, _, _ = _write(tmp_path, T_KW if arch == "t" else R_KW)
    cfg = compose("sample", [f"generator=stylegan3_{arch}_ffhq_1024", f"paths.stylegan3_{arch}_ffhq={path}"])
    with pytest.raises((CheckpointError, InstantiationException), match="resolution 64 in the file, 1024"):
        instantiate(cfg.generator)
    cfg = compose("sample", [f"generator=stylegan3_{arch}_ffhq_1024", f"paths.stylegan3_{arch}_ffhq={path}",
                             "generator.img_resolution=64", "generator.w_dim=16"])
    G = instantiate(cfg.generator)
    assert isinstance(G, StyleGAN3Generator) and G.num_ws == 16


def test_latent_refinement_of_a_stylegan3(tmp_path):
    """W and W+ refinement work unchanged on a StyleGAN3; noise optimisation is refused by name (it has none)."""
    from inversion.losses import MSELoss
    from inversion.models import demo_stylegan3
    from inversion.refine import refine

    G = demo_stylegan3(img_resolution=32, channel_max=16)
    with torch.no_grad():
        target = G(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)))
    r = refine(G, target, space="w+", num_steps=6, lr=0.01, losses={"mse": (1.0, MSELoss())})
    assert (r.curves["mse"][-1] < r.curves["mse"][0]).all() and r.ws.shape == (2, 16, G.w_dim)
    # the projector's initial noise (scaled by W's spread, estimated from the StyleGAN3 mapping) moves the start
    r0 = refine(G, target, space="w", num_steps=1, lr=0.0, losses={"mse": (1.0, MSELoss())})
    r1 = refine(G, target, space="w", num_steps=1, lr=0.0, initial_noise_factor=0.05, noise_ramp=1.0,
                losses={"mse": (1.0, MSELoss())})
    assert torch.isfinite(r1.curves["mse"]).all() and not torch.equal(r1.curves["mse"], r0.curves["mse"])
    for kw in ({"space": "w+noise"}, {"space": "w", "optimize_noise": True}):
        with pytest.raises(ValueError, match="no noise inputs"):
            refine(G, target, num_steps=1, losses={"mse": (1.0, MSELoss())}, **kw)


def test_evaluation_and_the_clis_accept_a_stylegan3(tmp_path, capsys):
    """An (untrained) ReStyle export over the seeded StyleGAN3: evaluate.py with refinement, the invert CLI
    (latent refinement and pivotal tuning run), the edit CLI and the sample CLI."""
    import json

    from inversion import cli, load_tuned
    from inversion.checkpoints import save_inverter
    from inversion.config import compose
    from inversion.encoders import BackboneEncoder
    from inversion.evaluation import evaluate
    from inversion.imageio import save_grid
    from inversion.inverter import Inverter
    from inversion.models import demo_stylegan3

    gen_cfg = {"_target_": "inversion.models.demo_stylegan3", "img_resolution": 32, "channel_max": 16}
    G = demo_stylegan3(img_resolution=32, channel_max=16)
    kwargs = dict(num_ws=16, w_dim=G.w_dim, input_size=32, channels=[16, 16, 32, 32])
    torch.manual_seed(0)
    inv = Inverter(encoder=BackboneEncoder(**kwargs).eval(), generator=G, num_iters=2, residual=True,
                   encoder_size=32)
    ckpt = save_inverter(inv, tmp_path / "sg3.pt", generator_config=gen_cfg,
                         encoder_config={"_target_": "inversion.encoders.BackboneEncoder", **kwargs})
    out = tmp_path / "eval"
    result = evaluate(compose("evaluate", [
        f"checkpoint={ckpt}", "eval_data.split=smoke", "eval_data.expect.img_resolution=32", "batch_size=2",
        "latency.enabled=false", "progress=false", "report.grid_images=2", "refine=image2stylegan",
        "refine.num_steps=2", "refine.losses.perceptual.weight=0", "refine_eval.seeds=[encoder]", f"out_dir={out}"]))
    assert len(result["metrics"]["per_iteration"]) == 2 and result["metrics"]["refine"]["steps"] == [0, 1, 2]
    photos = tmp_path / "photos"
    photos.mkdir()
    with torch.no_grad():
        for i in range(2):
            save_grid(G(torch.randn(1, G.z_dim)), photos / f"p{i}.png", nrow=1, padding=0)
    common = ["invert", "--checkpoint", str(ckpt), "--input", str(photos), "--device", "cpu", "--no-progress"]
    assert cli.main([*common, "--output", str(tmp_path / "inv"), "--refine", "image2stylegan", "--refine-steps",
                     "2", "--refine-size", "32", "--refine-set", "losses.perceptual.weight=0"]) == 0
    assert json.loads((tmp_path / "inv" / "summary.json").read_text())["num_processed"] == 2
    assert cli.main([*common, "--output", str(tmp_path / "pti"), "--refine", "pti", "--refine-steps", "2",
                     "--refine-size", "32", "--refine-set", "losses.lpips.weight=0", "threshold=null"]) == 0
    tuned = load_tuned(tmp_path / "pti" / "tuned" / "p0.pt", G)  # pivotal tuning of a StyleGAN3
    assert tuned.steps_taken.tolist() == [2] and any(d.abs().max() > 0 for d in tuned.deltas.values())
    latent = tmp_path / "inv" / "latents" / "p0.pt"
    assert cli.main(["edit", "--checkpoint", str(ckpt), "--device", "cpu", "--output", str(tmp_path / "mix"),
                     "mix", str(latent), str(tmp_path / "inv" / "latents" / "p1.pt"), "--layers", "8:16"]) == 0
    assert (tmp_path / "mix" / "grid.png").is_file()


def test_load_generator_reads_a_bare_stylegan3_state_dict(tmp_path):
    """stylegan3-editing's generator files (``sg3-r-ffhq-1024.pt``) are NVIDIA's ``Generator.state_dict()``."""
    torch.manual_seed(0)
    G = _randomize(StyleGAN3Generator(**R_KW), seed=7)
    torch.save(G.state_dict(), tmp_path / "sg3-r-tiny.pt")
    loaded = load_generator(tmp_path / "sg3-r-tiny.pt")
    assert isinstance(loaded, StyleGAN3Generator) and loaded.num_ws == 16
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        assert (loaded.synthesis(ws) - G.synthesis(ws)).abs().max() == 0


def test_restyle_e4e_trains_against_a_tiny_stylegan3(tmp_path):
    """e4e's discriminator takes its real codes from the StyleGAN3 mapping ([N, 16, w_dim], a random layer per
    sample through the pool, as stylegan3-editing's coach) -- StyleGAN3 has no ``style`` network."""
    from inversion.training import train

    summary = train(_demo_sg3_train_config(tmp_path, 2, "encoder=restyle_e4e", "module=e4e"))
    assert summary["global_step"] == 2 and summary["nonfinite_steps"] == 0
