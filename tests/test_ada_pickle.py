"""stylegan2-ada pickles: restricted unpickling (nothing from the file runs) and exact conversion.

The tiny "ada" networks below follow NVIDIA stylegan2-ada-pytorch ``training/networks.py`` and its ops
(``conv2d_resample``, ``upfirdn2d``, ``bias_act``), re-implemented here independently of
``inversion.models.stylegan2``; their forward pass is the reference our converted ``Generator`` must match.
They pickle exactly like ``torch_utils.persistence`` objects (``_reconstruct_persistent_obj(meta)``), with
fake ``torch_utils`` / ``dnnlib`` modules present only while dumping.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import pickle
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inversion.models import CheckpointError, load_generator
from inversion.models.nvidia_convert import convert_ada_generator
from inversion.models.safe_unpickle import (
    PersistentRecord,
    load_ada_pickle,
    read_ada_pickle,
)
from inversion.models.stylegan2 import Generator as OurGenerator

FAKE_MODULES = ("dnnlib", "dnnlib.util", "torch_utils", "torch_utils.persistence")
SQRT2 = float(np.sqrt(2))
_DUMP: dict[str, str] = {"module_src": ""}  # module_src written into every persistent object's meta
# ada adds the demodulation eps 1e-8 to sum((w*s)^2) of the unscaled weight; rosinality to the weight scaled
# by 1/sqrt(fan_in), i.e. eps * fan_in in ada's terms. The float64 test switches the reference to that.
REF_DEMOD = {"eps_times_fan_in": False}


# --------------------------------------------------------------------------- fake NVIDIA modules


class FakeEasyDict(dict):
    """Pickles as ``dnnlib.util.EasyDict`` (while the fake modules are installed)."""


def _fake_reconstruct_persistent_obj(meta: dict) -> Any:
    raise AssertionError("only referenced by the pickle; must never be called")


@contextlib.contextmanager
def fake_nvidia_modules() -> Iterator[None]:
    """Install fake ``dnnlib.util`` and ``torch_utils.persistence`` so pickle can reference them by name."""
    assert not any(name in sys.modules for name in FAKE_MODULES), "a real dnnlib/torch_utils is installed"
    mods = {name: types.ModuleType(name) for name in FAKE_MODULES}
    FakeEasyDict.__module__, FakeEasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    mods["dnnlib.util"].EasyDict = FakeEasyDict
    mods["dnnlib"].util = mods["dnnlib.util"]
    _fake_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _fake_reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _fake_reconstruct_persistent_obj
    mods["torch_utils"].persistence = mods["torch_utils.persistence"]
    sys.modules.update(mods)
    try:
        yield
    finally:
        for name in FAKE_MODULES:
            sys.modules.pop(name, None)


def dump_nvidia_pickle(path: Path, data: Any, module_src: str, protocol: int = 3) -> Path:
    """Write ``data`` as NVIDIA's training loop does (``pickle.dump``; Python 3.7's default protocol 3)."""
    _DUMP["module_src"] = module_src
    with fake_nvidia_modules(), open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return path


def evil_module_src(marker: Path) -> str:
    """A ``module_src`` that leaves a marker file (and fails) if anything ever executes it."""
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('executed')\nraise SystemExit(3)\n"


# --------------------------------------------------------------------------- ada ops (reference maths)


def setup_filter(taps: list[float]) -> torch.Tensor:
    """``upfirdn2d.setup_filter``: 4 taps -> non-separable 2-D outer product, normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f.ger(f)
    return f / f.sum()


def ref_upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, padding=(0, 0, 0, 0), gain: float = 1):
    """``upfirdn2d._upfirdn2d_ref`` (no down-sampling): zero-insert, pad/crop, true convolution with f."""
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = (f * gain ** (f.ndim / 2)).to(x.dtype).flip([0, 1])
    return F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)


def ref_upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``upfirdn2d.upsample2d(x, f)`` with up=2."""
    fh, fw = f.shape
    pad = [(fw + 1) // 2, (fw - 2) // 2, (fh + 1) // 2, (fh - 2) // 2]
    return ref_upfirdn2d(x, f, up=2, padding=pad, gain=4)


def ref_conv2d_wrapper(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """``conv2d_resample._conv2d_wrapper``: flips the kernel iff ``flip_weight`` is False."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    op = F.conv_transpose2d if transpose else F.conv2d
    return op(x, w, stride=stride, padding=padding, groups=groups)


def ref_conv2d_resample(x, w, f, up: int, padding: int, groups: int, flip_weight: bool) -> torch.Tensor:
    """``conv2d_resample`` for down=1: plain conv2d, or the transposed-conv fast path for up > 1."""
    if up == 1:
        return ref_conv2d_wrapper(x, w, padding=padding, groups=groups, flip_weight=flip_weight)
    out_ch, in_per_group, kh, kw = w.shape
    fh, fw = f.shape
    px0, px1 = padding + (fw + up - 1) // 2, padding + (fw - up) // 2
    py0, py1 = padding + (fh + up - 1) // 2, padding + (fh - up) // 2
    w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
    pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
    x = ref_conv2d_wrapper(
        x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight
    )
    return ref_upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up**2)


def ref_modulated_conv2d(x, weight, styles, noise=None, up=1, padding=0, f=None, demodulate=True,
                         flip_weight=True) -> torch.Tensor:
    """``networks.modulated_conv2d`` with ``fused_modconv=True`` (ada's eval path in float32)."""
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
    if demodulate:
        eps = 1e-8 * (in_ch * kh * kw if REF_DEMOD["eps_times_fan_in"] else 1)
        w = w * (w.square().sum(dim=[2, 3, 4]) + eps).rsqrt().reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    x = ref_conv2d_resample(x, w.reshape(-1, in_ch, kh, kw), f, up, padding, n, flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    return x + noise if noise is not None else x


def ref_bias_act(x, b, act="linear", gain=1.0, clamp=None) -> torch.Tensor:
    """``bias_act._bias_act_ref``: add bias, activation, gain, then clamp."""
    x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    x = x * gain if gain != 1 else x
    return x.clamp(-clamp, clamp) if clamp is not None else x


# --------------------------------------------------------------------------- tiny ada networks


class Persistent(torch.nn.Module):
    """Pickles like ``persistence.persistent_class``: ``_reconstruct_persistent_obj(meta)``, state=__dict__."""

    NV_NAME: str | None = None  # class name written into meta (default: the Python class name)

    def _keep_init_kwargs(self, **kwargs: Any) -> None:
        self._init_args = ()
        self._init_kwargs = kwargs

    def __reduce__(self):
        persistence = sys.modules["torch_utils.persistence"]
        fields = list(super().__reduce__())
        fields += [None] * max(3 - len(fields), 0)
        meta = dict(type="class", version=6, module_src=_DUMP["module_src"],
                    class_name=self.NV_NAME or type(self).__name__, state=fields[2])
        return (persistence._reconstruct_persistent_obj, (meta,), None)


class FullyConnectedLayer(Persistent):
    def __init__(self, in_features, out_features, activation="linear", lr_multiplier=1, bias_init=0):
        super().__init__()
        self._keep_init_kwargs(in_features=in_features, out_features=out_features, activation=activation,
                               lr_multiplier=lr_multiplier, bias_init=bias_init)
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init)))
        self.weight_gain = lr_multiplier / np.sqrt(in_features)  # np.float64, as in NVIDIA's pickles
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight * float(self.weight_gain)
        b = self.bias * self.bias_gain if self.bias_gain != 1 else self.bias
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ref_bias_act(x.matmul(w.t()), b, act=self.activation, gain=SQRT2)


def normalize_2nd_moment(x: torch.Tensor) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


class MappingNetwork(Persistent):
    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01, w_avg_beta=0.995,
                 embed_features=None):
        super().__init__()
        self._keep_init_kwargs(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=num_layers,
                               lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta, embed_features=embed_features)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        if c_dim > 0:  # labels: a linear embedding (lr 1), normalised and concatenated to the normalised z
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        features = [z_dim + embed_features] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1):
        x = normalize_2nd_moment(z)
        if self.c_dim > 0:
            x = torch.cat([x, normalize_2nd_moment(self.embed(c))], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        return self.w_avg.lerp(x, truncation_psi) if truncation_psi != 1 else x


class SynthesisLayer(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, resolution, up=1, conv_clamp=None,
                 resample_filter=(1, 3, 3, 1)):
        super().__init__()
        self._keep_init_kwargs(in_channels=in_channels, out_channels=out_channels, w_dim=w_dim,
                               resolution=resolution, up=up, conv_clamp=conv_clamp)
        self.resolution, self.up, self.conv_clamp, self.padding = resolution, up, conv_clamp, 1
        self.use_noise, self.activation, self.act_gain = True, "lrelu", np.sqrt(2)
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w):
        styles = self.affine(w)
        noise = self.noise_const * self.noise_strength  # noise_mode='const'
        x = ref_modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                                 f=self.resample_filter.to(x.dtype), flip_weight=(self.up == 1))
        return ref_bias_act(x, self.bias, act="lrelu", gain=float(self.act_gain), clamp=self.conv_clamp)


class ToRGBLayer(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None):
        super().__init__()
        self._keep_init_kwargs(in_channels=in_channels, out_channels=out_channels, w_dim=w_dim,
                               kernel_size=kernel_size, conv_clamp=conv_clamp)
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size**2))

    def forward(self, x, w):
        styles = self.affine(w) * float(self.weight_gain)
        x = ref_modulated_conv2d(x, self.weight, styles, demodulate=False)
        return ref_bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, conv_clamp=None):
        super().__init__()
        self._keep_init_kwargs(in_channels=in_channels, out_channels=out_channels, w_dim=w_dim,
                               resolution=resolution, img_channels=img_channels, is_last=is_last,
                               conv_clamp=conv_clamp)
        self.in_channels, self.resolution, self.architecture = in_channels, resolution, "skip"
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))
        self.num_conv, self.num_torgb = 0, 1
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)

    def forward(self, x, img, ws):
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter))
        else:
            x = self.conv0(x, next(w_iter))
            x = self.conv1(x, next(w_iter))
        if img is not None:
            img = ref_upsample2d(img, self.resample_filter.to(img.dtype))
        y = self.torgb(x, next(w_iter))
        return x, (img + y if img is not None else y)


class SynthesisNetwork(Persistent):
    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512,
                 num_fp16_res=0, conv_clamp=None):
        super().__init__()
        self._keep_init_kwargs(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                               channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
                               conv_clamp=conv_clamp)
        self.block_resolutions = [2**i for i in range(2, int(np.log2(img_resolution)) + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_ch, channels[res], w_dim, res, img_channels,
                                   is_last=(res == img_resolution), conv_clamp=conv_clamp)
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws):
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv
        return img


class Generator(Persistent):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs=None,
                 synthesis_kwargs=None):
        super().__init__()
        mapping_kwargs, synthesis_kwargs = mapping_kwargs or {}, synthesis_kwargs or {}
        self._keep_init_kwargs(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                               img_channels=img_channels, mapping_kwargs=mapping_kwargs,
                               synthesis_kwargs=synthesis_kwargs)
        self.z_dim, self.c_dim, self.w_dim, self.img_resolution = z_dim, c_dim, w_dim, img_resolution
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)


class Discriminator(Persistent):
    def __init__(self):
        super().__init__()
        self._keep_init_kwargs()
        self.fc = FullyConnectedLayer(8, 1)


class AugmentPipe(Persistent):
    def __init__(self):
        super().__init__()
        self._keep_init_kwargs(xflip=1.0)
        self.register_buffer("p", torch.zeros([]))


# --------------------------------------------------------------------------- fixtures / helpers


def tiny_ada_generator(seed: int = 0, conv_clamp: float | None = None, c_dim: int = 0,
                       **mapping_kwargs: Any) -> Generator:
    """16 px, z/w 32, channels {4: 16, 8: 16, 16: 8}, 3 mapping layers; every tensor random and non-trivial.
    ``c_dim > 0``: conditional (``mapping.embed``; ``mapping_kwargs`` such as ``embed_features``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(32, c_dim, 32, 16, 3, mapping_kwargs=FakeEasyDict(num_layers=3, **mapping_kwargs),
                      synthesis_kwargs=FakeEasyDict(channel_base=128, channel_max=16, num_fp16_res=0,
                                                    conv_clamp=conv_clamp))
        with torch.no_grad():
            for name, t in G.named_parameters():
                if name == "mapping.embed.bias":  # lr 1: a bias of the weights' scale, so c matters
                    t.copy_(0.5 * torch.randn_like(t))
                elif name.endswith("affine.bias"):
                    t.add_(0.3 * torch.randn_like(t))
                elif name.startswith("mapping.") and name.endswith(".bias"):
                    t.copy_(10 * torch.randn_like(t))  # times lr 0.01
                elif name.endswith(("noise_strength", ".bias")):
                    t.copy_(0.5 * torch.randn_like(t))
            G.mapping.w_avg.normal_()
    return G.eval().requires_grad_(False)


def write_snapshot(path: Path, G_ema: Generator, marker: Path, protocol: int = 3, **extra: Any) -> Path:
    """A ``network-snapshot-*.pkl``-shaped pickle: G, D, G_ema, augment_pipe, training_set_kwargs."""
    data = dict(training_set_kwargs=FakeEasyDict(path="ffhq.zip", resolution=16, xflip=False),
                G=tiny_ada_generator(seed=99), D=Discriminator(), G_ema=G_ema, augment_pipe=AugmentPipe())
    data.update(extra)
    return dump_nvidia_pickle(path, data, evil_module_src(marker), protocol=protocol)


def converted_generator(path: Path, dtype: torch.dtype = torch.float32) -> OurGenerator:
    state, kwargs = convert_ada_generator(read_ada_pickle(path))
    G = OurGenerator(**kwargs)
    G.load_state_dict(state, strict=True)
    return G.to(dtype).eval().requires_grad_(False)


def random_ws(n: int, num_ws: int, w_dim: int, seed: int = 1) -> torch.Tensor:
    """Different w per layer, so a wrong layer order cannot go unnoticed."""
    return torch.randn(n, num_ws, w_dim, generator=torch.Generator().manual_seed(seed))


class Evil:
    """An object whose unpickling would call ``func(*args)``."""

    def __init__(self, func: Any, *args: Any):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


# --------------------------------------------------------------------------- tests: reading


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_reads_g_ema_without_running_or_importing_anything(tmp_path: Path, protocol: int):
    marker = tmp_path / "module_src_was_executed"
    G = tiny_ada_generator()
    path = write_snapshot(tmp_path / "network-snapshot-000000.pkl", G, marker, protocol=protocol)
    assert not any(name in sys.modules for name in FAKE_MODULES)

    ada = read_ada_pickle(path)

    assert not marker.exists()
    assert not any(name in sys.modules for name in FAKE_MODULES), "dnnlib/torch_utils must not be imported"
    expected = G.state_dict()
    assert set(ada["state_dict"]) == set(expected)
    for key, value in expected.items():
        assert torch.equal(ada["state_dict"][key], value), key
    for key in ("mapping.w_avg", "synthesis.b4.const", "synthesis.b8.conv0.noise_const",
                "synthesis.b16.resample_filter", "synthesis.b8.conv0.resample_filter"):
        assert key in ada["state_dict"]
    assert ada["class_name"] == "Generator"
    assert ada["init_kwargs"]["synthesis_kwargs"]["channel_base"] == 128
    assert type(ada["init_kwargs"]["mapping_kwargs"]) is dict


def test_records_are_inert_and_keep_module_src_as_text(tmp_path: Path):
    marker = tmp_path / "marker"
    path = write_snapshot(tmp_path / "snap.pkl", tiny_ada_generator(), marker)
    data = load_ada_pickle(path)
    assert set(data) == {"training_set_kwargs", "G", "D", "G_ema", "augment_pipe"}
    for key in ("G", "D", "G_ema", "augment_pipe"):
        assert isinstance(data[key], PersistentRecord) and not isinstance(data[key], torch.nn.Module)
    assert data["G_ema"].module_src == evil_module_src(marker)
    assert data["training_set_kwargs"]["resolution"] == 16
    assert not marker.exists()


# --------------------------------------------------------------------------- tests: conversion


@pytest.mark.parametrize("conv_clamp", [None, 1.0])
def test_converted_generator_matches_ada_forward(tmp_path: Path, conv_clamp: float | None):
    G_ada = tiny_ada_generator(conv_clamp=conv_clamp)
    path = write_snapshot(tmp_path / "snap.pkl", G_ada, tmp_path / "marker")
    state, kwargs = convert_ada_generator(read_ada_pickle(path))
    assert kwargs == dict(z_dim=32, w_dim=32, img_resolution=16, n_mlp=3, channels={4: 16, 8: 16, 16: 8},
                          lr_mlp=0.01, blur_kernel=(1.0, 3.0, 3.0, 1.0), conv_clamp=conv_clamp)
    G = converted_generator(path)
    assert G.num_ws == G_ada.num_ws == 6

    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    for psi in (1.0, 0.7):
        torch.testing.assert_close(G.mapping(z, truncation_psi=psi), G_ada.mapping(z, truncation_psi=psi),
                                   rtol=1e-5, atol=1e-5)
    ws = random_ws(3, G.num_ws, 32)
    ref = G_ada.synthesis(ws)
    ours = G.synthesis(ws, noise_mode="const")
    assert ref.shape == ours.shape == (3, 3, 16, 16)
    assert ref.abs().max() > 0.5  # a non-degenerate image
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)

    if conv_clamp is not None:  # the clamp is really active in this test
        unclamped = OurGenerator(**{**kwargs, "conv_clamp": None})
        unclamped.load_state_dict(state)
        assert (unclamped.synthesis(ws) - ref).abs().max() > 1e-2


def test_float64_difference_is_only_the_demodulation_epsilon(tmp_path: Path, monkeypatch):
    """In float64 the only difference left is where eps 1e-8 enters demodulation (documented)."""
    G_ada = tiny_ada_generator().double()
    path = write_snapshot(tmp_path / "snap.pkl", tiny_ada_generator(), tmp_path / "marker")
    G = converted_generator(path, dtype=torch.float64)
    ws = random_ws(3, G.num_ws, 32).double()
    ours = G.synthesis(ws)
    assert (ours - G_ada.synthesis(ws)).abs().max() < 1e-6  # measured ~9e-8 on images of max |x| ~10
    monkeypatch.setitem(REF_DEMOD, "eps_times_fan_in", True)
    assert (ours - G_ada.synthesis(ws)).abs().max() < 1e-12  # measured ~7e-15: nothing else differs


def test_flipping_the_upsampling_kernels_would_be_detected(tmp_path: Path):
    """Sensitivity check: the comparison above fails if conv0 kernels are flipped (they must not be)."""
    G_ada = tiny_ada_generator()
    path = write_snapshot(tmp_path / "snap.pkl", G_ada, tmp_path / "marker")
    state, kwargs = convert_ada_generator(read_ada_pickle(path))
    for i in (0, 2):
        state[f"convs.{i}.conv.weight"] = state[f"convs.{i}.conv.weight"].flip([3, 4])
    G = OurGenerator(**kwargs)
    G.load_state_dict(state)
    ws = random_ws(2, G.num_ws, 32)
    assert (G.synthesis(ws) - G_ada.synthesis(ws)).abs().max() > 1e-2


def test_load_generator_reads_ada_pickles(tmp_path: Path):
    G_ada = tiny_ada_generator(conv_clamp=1.0)
    path = write_snapshot(tmp_path / "network-snapshot-000100.pkl", G_ada, tmp_path / "marker")
    G = load_generator(path)
    ws = random_ws(2, G.num_ws, 32)
    torch.testing.assert_close(G.synthesis(ws), G_ada.synthesis(ws), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(G.w_avg, G_ada.mapping.w_avg)


def test_stylegan3_repository_layout_keeps_synthesis_options_at_the_top_level(tmp_path: Path):
    """The stylegan3 repository's ``networks_stylegan2.Generator(..., **synthesis_kwargs)`` pickles its synthesis
    options (``conv_clamp``, ...) at the top level of the init kwargs, not under ``synthesis_kwargs``."""
    G_ada = tiny_ada_generator(conv_clamp=1.0)
    ada = read_ada_pickle(write_snapshot(tmp_path / "snap.pkl", G_ada, tmp_path / "marker"))
    ada["init_kwargs"].update(ada["init_kwargs"].pop("synthesis_kwargs"))
    state, kwargs = convert_ada_generator(ada)
    assert kwargs["conv_clamp"] == 1.0
    G = OurGenerator(**kwargs)
    G.load_state_dict(state)
    ws = random_ws(2, G.num_ws, 32)
    torch.testing.assert_close(G.synthesis(ws), G_ada.synthesis(ws), rtol=1e-5, atol=1e-5)  # the clamp is active
    del ada["init_kwargs"]["conv_clamp"]
    assert convert_ada_generator(ada)[1]["conv_clamp"] == 256  # that repository's SynthesisBlock default


# --------------------------------------------------------------------------- tests: conditional (c_dim > 0)


def one_hot(labels: list[int], c_dim: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(labels), c_dim).float()


def ada_mapping_formula(state: dict[str, torch.Tensor], z, c, num_ws: int, psi: float = 1.0, cutoff=None,
                        lr: float = 0.01, order: str = "zc", normalize_c: bool = True) -> torch.Tensor:
    """NVIDIA's conditional ``MappingNetwork.forward`` from the raw ada tensors, in z's dtype: ``x = n(z)``,
    ``y = n(embed(c))`` (linear, gains ``1/sqrt(c_dim)`` and 1), ``cat([x, y])``, ``fc{i}``: ``lrelu(x (W lr/sqrt(in))^T
    + b lr) sqrt(2)``, broadcast, ``w_avg.lerp(ws, psi)`` on layers < cutoff. ``order`` / ``normalize_c`` give the
    wrong variants used to show the comparison can fail."""
    t = {k: v.to(z.dtype) for k, v in state.items() if k.startswith("mapping.")}
    w_e = t["mapping.embed.weight"]
    y = c @ (w_e / w_e.shape[1] ** 0.5).T + t["mapping.embed.bias"]
    y = normalize_2nd_moment(y) if normalize_c else y
    x = torch.cat([normalize_2nd_moment(z), y] if order == "zc" else [y, normalize_2nd_moment(z)], dim=1)
    i = 0
    while f"mapping.fc{i}.weight" in t:
        w, b = t[f"mapping.fc{i}.weight"], t[f"mapping.fc{i}.bias"]
        x = F.leaky_relu(x @ (w * (lr / w.shape[1] ** 0.5)).T + b * lr, 0.2) * SQRT2
        i += 1
    ws = x[:, None].repeat(1, num_ws, 1)
    cut = num_ws if cutoff is None else cutoff
    return torch.cat([t["mapping.w_avg"].lerp(ws[:, :cut], psi), ws[:, cut:]], dim=1)


@pytest.mark.parametrize("embed_features", [None, 24])
def test_conditional_pickle_loads_and_matches_ada_forward(tmp_path: Path, embed_features: int | None):
    from inversion.models import ConditionalGenerator

    extra = {} if embed_features is None else {"embed_features": embed_features}
    G_ada = tiny_ada_generator(conv_clamp=1.0, c_dim=5, **extra)
    path = write_snapshot(tmp_path / "network-snapshot-000100.pkl", G_ada, tmp_path / "marker")
    state, kwargs = convert_ada_generator(read_ada_pickle(path))
    assert kwargs["c_dim"] == 5 and kwargs["embed_features"] == (embed_features or 32) and kwargs["z_dim"] == 32
    assert state["style.embed.weight"].shape == (embed_features or 32, 5)
    assert state["style.1.weight"].shape == (32, 32 + (embed_features or 32))

    G = load_generator(path)
    assert isinstance(G, ConditionalGenerator) and G.c_dim == 5
    torch.testing.assert_close(G.w_avg, G_ada.mapping.w_avg)
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(0))
    c = one_hot([0, 1, 4, 2], 5)
    for psi in (1.0, 0.7):
        torch.testing.assert_close(G.mapping(z, c, truncation_psi=psi), G_ada.mapping(z, c, truncation_psi=psi),
                                   rtol=1e-5, atol=1e-5)
    ws = G.mapping(z, c=c)
    torch.testing.assert_close(G.synthesis(ws), G_ada.synthesis(ws), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(G(z, c), G_ada.synthesis(G_ada.mapping(z, c)), rtol=1e-5, atol=1e-5)


def test_conditional_mapping_equals_nvidia_formula(tmp_path: Path):
    """Random weights (non-trivial biases, w_avg), float64: our mapping against the formula on the raw tensors."""
    path = write_snapshot(tmp_path / "snap.pkl", tiny_ada_generator(seed=3, c_dim=7), tmp_path / "marker")
    raw = read_ada_pickle(path)["state_dict"]
    G = load_generator(path).double()
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(6, 32, generator=gen, dtype=torch.float64)
    c = torch.randn(6, 7, generator=gen, dtype=torch.float64)  # any real-valued labels, not only one-hot
    for psi, cutoff in ((1.0, None), (0.7, None), (0.5, 2)):
        ours = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
        ref = ada_mapping_formula(raw, z, c, G.num_ws, psi, cutoff)
        assert (ours - ref).abs().max() < 1e-12, (psi, cutoff)
    ours = G.mapping(z, c)
    for wrong in (dict(order="cz"), dict(normalize_c=False)):  # the comparison sees a wrong convention
        assert (ours - ada_mapping_formula(raw, z, c, G.num_ws, **wrong)).abs().max() > 1e-2, wrong


def test_c_changes_the_output(tmp_path: Path):
    path = write_snapshot(tmp_path / "snap.pkl", tiny_ada_generator(c_dim=5), tmp_path / "marker")
    G = load_generator(path)
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(0)).repeat(2, 1)
    c = one_hot([0, 1, 2, 3, 4, 0], 5)  # rows i and i + 3: same z, another class
    ws = G.mapping(z, c)
    torch.testing.assert_close(G.mapping(z[:3], one_hot([0, 1, 2], 5)), ws[:3])  # same z, same class
    assert (ws[:3] - ws[3:]).abs().amax(dim=(1, 2)).min() > 1e-2
    img = G.synthesis(ws)
    assert (img[:3] - img[3:]).abs().amax(dim=(1, 2, 3)).min() > 1e-2


def test_conditional_generator_without_c_is_a_clear_error(tmp_path: Path):
    path = write_snapshot(tmp_path / "snap.pkl", tiny_ada_generator(c_dim=5), tmp_path / "marker")
    G = load_generator(path)
    z = torch.randn(2, 32)
    for call in (lambda: G.mapping(z), lambda: G.mapping(z, truncation_psi=0.7), lambda: G(z), lambda: G.style(z),
                 lambda: G.mapping(z, torch.zeros(2, 4))):
        with pytest.raises(ValueError, match=r"c must be \[N, 5\] labels for this conditional generator \(c_dim=5\)"):
            call()
    with pytest.raises(TypeError, match=r"c must be a tensor or None .*\(z, c, psi, cutoff\)"):
        G.mapping(z, 0.7)  # the unconditional StyleGAN2's positional psi
    with pytest.raises(ValueError, match="w_avg of a conditional generator"):
        G.compute_w_avg(100)


def test_unconditional_pickles_are_unchanged(tmp_path: Path):
    path = write_snapshot(tmp_path / "snap.pkl", tiny_ada_generator(), tmp_path / "marker")
    G = load_generator(path)
    assert type(G) is OurGenerator and G.c_dim == 0 and "style.embed.weight" not in G.state_dict()
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(G.mapping(z, 0.7), G.mapping(z, truncation_psi=0.7))  # positional psi, as before


def test_conditional_options_we_cannot_represent_are_errors(tmp_path: Path):
    path = write_snapshot(tmp_path / "snap.pkl", tiny_ada_generator(), tmp_path / "marker")
    ada = read_ada_pickle(path)
    ada["init_kwargs"]["c_dim"] = 10  # the kwargs say conditional, the tensors do not
    with pytest.raises(ValueError, match="c_dim=10 but the tensors give 0"):
        convert_ada_generator(ada)
    path = write_snapshot(tmp_path / "cond.pkl", tiny_ada_generator(c_dim=5), tmp_path / "marker")
    ada = read_ada_pickle(path)
    ada["init_kwargs"]["mapping_kwargs"]["embed_features"] = 16
    with pytest.raises(ValueError, match="embed_features=16 but the tensors give 32"):
        convert_ada_generator(ada)
    ada = read_ada_pickle(path)  # labels only (z_dim=0): fc0 reads the embedding alone
    ada["init_kwargs"]["z_dim"] = 0
    ada["state_dict"]["mapping.fc0.weight"] = ada["state_dict"]["mapping.fc0.weight"][:, 32:]
    with pytest.raises(NotImplementedError, match="z_dim=0"):
        convert_ada_generator(ada)
    ada = read_ada_pickle(path)
    del ada["state_dict"]["mapping.embed.bias"]
    with pytest.raises(ValueError, match="mapping.embed.bias"):
        convert_ada_generator(ada)


def test_conditional_generators_downstream(tmp_path: Path):
    """Sampling takes a class (one-hot c); what draws W from random z without labels says so."""
    from inversion.data import render_seeds
    from inversion.refine import refine
    from inversion.refine.tuning import tune_generator
    from inversion.sample import sample_grid

    G = load_generator(write_snapshot(tmp_path / "cond.pkl", tiny_ada_generator(c_dim=5), tmp_path / "m"))
    a, b = sample_grid(G, 2, class_idx=1), sample_grid(G, 2, class_idx=3)
    assert a.shape == (2, 3, 16, 16) and (a - b).abs().max() > 1e-2
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, G.synthesis(G.mapping(z, one_hot([1, 1], 5))).clamp(-1, 1))
    for bad in (None, 5):
        with pytest.raises(ValueError, match=r"conditional \(c_dim=5\): set class_idx"):
            sample_grid(G, 2, class_idx=bad)
    G0 = load_generator(write_snapshot(tmp_path / "uncond.pkl", tiny_ada_generator(), tmp_path / "m"))
    with pytest.raises(ValueError, match="unconditional"):
        sample_grid(G0, 2, class_idx=0)

    target, ws = G.synthesis(G.mapping(z, one_hot([0, 1], 5))), G.mapping(z, one_hot([0, 1], 5))
    mse = {"mse": (1.0, torch.nn.MSELoss())}
    for call, what in ((lambda: render_seeds(G, [1, 2]), "render_seeds"),
                       (lambda: refine(G, target, initial_noise_factor=0.05, num_steps=1), "w_std"),
                       (lambda: tune_generator(G, target, ws, losses=mse, locality={"lpips_weight": 0}), "locality")):
        with pytest.raises(ValueError, match=rf"{what}.* conditional \(c_dim=5"):
            call()
    refine(G, target, ws_init=ws, initial_noise_factor=0.05, w_std=1.0, num_steps=1)  # w_std given: runs


def test_unknown_tensors_and_bad_shapes_are_errors(tmp_path: Path):
    path = write_snapshot(tmp_path / "snap.pkl", tiny_ada_generator(), tmp_path / "marker")
    ada = read_ada_pickle(path)
    ada["state_dict"]["synthesis.b8.skip.weight"] = torch.zeros(16, 16, 1, 1)
    with pytest.raises(ValueError, match="skip.weight"):
        convert_ada_generator(ada)
    ada = read_ada_pickle(path)
    ada["state_dict"]["synthesis.b8.torgb.bias"] = torch.zeros(4)
    with pytest.raises(ValueError, match="torgb.bias"):
        convert_ada_generator(ada)


# --------------------------------------------------------------------------- tests: StyleGAN3


class SynthesisInput(Persistent):
    def __init__(self, w_dim: int, channels: int):
        super().__init__()
        self._keep_init_kwargs(w_dim=w_dim, channels=channels, size=36, sampling_rate=16, bandwidth=2)
        self.affine = FullyConnectedLayer(w_dim, 4)
        self.register_buffer("freqs", torch.randn([channels, 2]))
        self.register_buffer("phases", torch.rand([channels]) - 0.5)
        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))


class SG3Synthesis(Persistent):
    NV_NAME = "SynthesisNetwork"

    def __init__(self, input_class: type[Persistent]):
        super().__init__()
        self._keep_init_kwargs(w_dim=8, img_resolution=16, img_channels=3)
        self.input = input_class(8, 4)
        self.L0_36_512 = FullyConnectedLayer(8, 4)


class SG3Generator(Persistent):
    NV_NAME = "Generator"

    def __init__(self, input_class: type[Persistent]):
        super().__init__()
        self._keep_init_kwargs(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3)
        self.synthesis = SG3Synthesis(input_class)
        self.mapping = MappingNetwork(8, 0, 8, num_ws=16, num_layers=2)


class RenamedInput(SynthesisInput):
    NV_NAME = "SomethingElse"  # still recognised from the 'synthesis.input' / 'L0_36_512' key names


@pytest.mark.parametrize("input_class", [SynthesisInput, RenamedInput])
def test_stylegan3_pickles_are_recognised(tmp_path: Path, input_class: type[Persistent]):
    """Told apart from stylegan2-ada by the module tree (class name or key names); this stub has too few layers
    for its init kwargs, so loading it is an error naming the missing tensors (full loads: test_stylegan3.py)."""
    marker = tmp_path / "marker"
    path = dump_nvidia_pickle(tmp_path / "stylegan3-t-ffhq-1024x1024.pkl",
                              dict(G_ema=SG3Generator(input_class), training_set_kwargs=None),
                              evil_module_src(marker))
    assert read_ada_pickle(path)["kind"] == "stylegan3"
    with pytest.raises(CheckpointError, match=r"missing .*L0_36_512\.affine") as info:
        load_generator(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


# --------------------------------------------------------------------------- tests: malicious pickles


def _assert_refused(path: Path, glob: str, marker: Path) -> None:
    with pytest.raises(pickle.UnpicklingError) as info:
        read_ada_pickle(path)
    message = str(info.value)
    assert glob in message and str(path) in message and "only reads network weights" in message, message
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen"])
def test_code_in_the_pickle_is_refused(tmp_path: Path, kind: str):
    marker = tmp_path / "pwned"
    touch = f"open({str(marker)!r}, 'w').write('pwned')"
    payloads = {
        "os.system": (Evil(os.system, f"touch {marker}"), "system"),
        "builtins.eval": (Evil(builtins.eval, touch), "builtins.eval"),
        "builtins.exec": (Evil(builtins.exec, touch), "builtins.exec"),
        "subprocess.Popen": (Evil(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"),
    }
    payload, glob = payloads[kind]
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": payload}))
    _assert_refused(path, glob, marker)


def test_hand_written_getattr_payload_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    # getattr(__import__('os'), 'system')('touch <marker>') in protocol 0.
    path.write_bytes(
        b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V" + f"touch {marker}".encode()
        + b"\ntR."
    )
    _assert_refused(path, "builtins.getattr", marker)


def test_payload_hidden_inside_a_real_snapshot_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = write_snapshot(tmp_path / "snap.pkl", tiny_ada_generator(), tmp_path / "src_marker",
                          training_set_kwargs=FakeEasyDict(path=Evil(os.system, f"touch {marker}")))
    _assert_refused(path, "system", marker)


def test_malicious_tensor_storage_payload_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"
    inner = pickle.dumps(Evil(os.system, f"touch {marker}"))
    storage = Evil(torch.storage._load_from_bytes, inner)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": storage}))
    with pytest.raises(pickle.UnpicklingError, match="does not decode as plain weights"):
        read_ada_pickle(path)
    assert not marker.exists()
