"""Convert an NVIDIA stylegan2-ada-pytorch ``G_ema`` to our ``Generator`` (read by :mod:`.safe_unpickle`).

Written like nanoGPT's ``GPT.from_pretrained``: the hyper-parameters are inferred from the NVIDIA tensor shapes (and
checked against the pickled init kwargs), our ``Generator`` is built from them on the meta device, and one loop walks
its state dict. Each of our keys finds its NVIDIA key and transform in :data:`KEY_TABLE`; the transformed tensor must
have our shape exactly (the error names both keys and both shapes), and every NVIDIA tensor must be used. The only
values not copied from a tensor: the FIR kernels (from the checked ``resample_filter``), the noise inputs of a
generator without noise (zeros) and ``w_avg`` of a generator that tracks none (zeros, with a warning).

Conversion conventions (ada ``networks.py`` -> rosinality ``model.py`` layout), all checked by
``tests/test_ada_pickle.py`` against an independent re-implementation of ada's forward pass:

* mapping: ``normalize_2nd_moment`` (eps 1e-8) is rosinality's ``PixelNorm``; ``fc{i}`` ->
  ``style.{i+1}``. Both store raw weights, apply ``lr / sqrt(in)`` to the weight and ``lr`` to the bias,
  then leaky ReLU(0.2) * sqrt(2). ``mapping.w_avg`` -> ``w_avg``. Conditional generators (``c_dim > 0``):
  ``mapping.embed`` -> ``style.embed`` unchanged (linear, lr 1) and ``fc0`` reads ``z_dim + embed_features``
  inputs; they become a :class:`~.stylegan2_cond.ConditionalGenerator` (``c_dim``, ``embed_features`` in the kwargs).
* ``affine`` -> ``conv.modulation`` unchanged (both: lr multiplier 1, gain 1/sqrt(w_dim); the bias init 1
  is only an initialisation, the stored bias is copied as is).
* conv weights ``[out, in, k, k]`` -> ``[1, out, in, k, k]``. **No kernel flip** for the up-sampling
  ``conv0``: ada calls ``conv2d_resample(up=2, flip_weight=False)``, which transposes the weight and runs
  ``conv_transpose2d`` with ``flip_weight=not False`` = no flip, then ``upfirdn2d`` with padding 1 and gain
  4 -- exactly rosinality's ``conv_transpose2d(stride=2)`` + ``Blur(kernel * 4, pad=(1, 1))``. (Both
  repositories flip TensorFlow's ``Conv0_up`` kernels on import from TF, so they agree with each other.)
* toRGB: ada multiplies the styles by ``1/sqrt(in*k*k)``, rosinality the weight -- the same product.
  ``torgb.bias`` ``[3]`` -> ``[1, 3, 1, 1]``.
* ``noise_strength`` ``[]`` -> ``noise.weight`` ``[1]``; ``noise_const`` ``[r, r]`` -> ``noises.noise_j``
  ``[1, 1, r, r]`` with ``j = 0`` for ``b4.conv1`` then ``conv0, conv1`` of ``b8, b16, ...``.
* ``b4.const`` ``[C, 4, 4]`` -> ``input.input`` ``[1, C, 4, 4]``; ``resample_filter`` (normalised 2-D
  FIR) * 4 -> ``blur.kernel`` / ``upsample.kernel``; ``conv_clamp`` -> ``Generator(conv_clamp=...)``.

Known numerical differences (float32 rounding level, < 1e-5 on images in the tests):

* demodulation: ada adds eps 1e-8 to ``sum((w * s)^2)`` of the *unscaled* weight, rosinality to the
  weight already scaled by ``1/sqrt(fan_in)``, i.e. an effective eps of ``1e-8 * fan_in``. The relative
  effect is about ``0.5e-8 / mean(s^2)`` -- far below float32 resolution for any trained network.
* ada runs the ``num_fp16_res`` highest resolutions in float16 on GPU (``num_fp16_res=4`` with
  ``conv_clamp=256`` in NVIDIA's configs); our converted generator computes in float32, so its images are
  slightly *more* precise than, and differ at the float16 level (~1e-3) from, NVIDIA's own output.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import torch

from .stylegan2_cond import stylegan2_generator

__all__ = ["KEY_TABLE", "convert_ada_generator", "nvidia_key"]

_ERR = "stylegan2-ada G_ema"


# --------------------------------------------------------------------------- the key table


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _lead1(t: torch.Tensor) -> torch.Tensor:
    """One leading axis: conv weights, ``const``, ``noise_strength`` ``[]`` -> ``[1]``."""
    return t[None]


def _lead2(t: torch.Tensor) -> torch.Tensor:
    """``noise_const`` ``[r, r]`` -> ``[1, 1, r, r]``."""
    return t[None, None]


def _rgb_bias(t: torch.Tensor) -> torch.Tensor:
    """``torgb.bias`` ``[3]`` -> ``[1, 3, 1, 1]``."""
    return t[None, ..., None, None]


_LAYER = r"conv1|convs\.\d+"  # our StyledConv <- ada SynthesisLayer
_RGB = r"to_rgb1|to_rgbs\.\d+"  # our ToRGB <- ada ToRGBLayer

KEY_TABLE: tuple[tuple[str, str, Callable[[torch.Tensor], torch.Tensor]], ...] = (
    # (our key, a regex: m = our module, p = a name kept as is; NVIDIA key: {m} = that module in ada; transform)
    (r"w_avg", "mapping.w_avg", _same),
    (r"style\.embed\.(?P<p>weight|bias)", "mapping.embed.{p}", _same),  # conditional generators only
    (r"(?P<m>style\.\d+)\.(?P<p>weight|bias)", "{m}.{p}", _same),
    (r"input\.input", "synthesis.b4.const", _lead1),
    (rf"(?P<m>{_LAYER}|{_RGB})\.conv\.weight", "{m}.weight", _lead1),  # no flip, see above
    (rf"(?P<m>{_LAYER}|{_RGB})\.conv\.modulation\.(?P<p>weight|bias)", "{m}.affine.{p}", _same),
    (rf"(?P<m>{_LAYER})\.activate\.bias", "{m}.bias", _same),
    (rf"(?P<m>{_LAYER})\.noise\.weight", "{m}.noise_strength", _lead1),
    (r"(?P<m>noises\.noise_\d+)", "{m}.noise_const", _lead2),
    (rf"(?P<m>{_RGB})\.bias", "{m}.bias", _rgb_bias),
)
"""Our ``Generator`` key -> (NVIDIA key, transform). FIR kernels are not copied: see :func:`convert_ada_generator`."""


def _ada_module(ours: str) -> str:
    """Our module path -> ada's: ``style.{i+1}`` -> ``mapping.fc{i}``, ``convs.{2k}/{2k+1}`` -> ``b{8*2^k}.conv0/1``,
    ``to_rgbs.{k}`` -> ``b{8*2^k}.torgb``, ``noises.noise_{j}`` -> the layer of noise input ``j``."""
    name, _, idx = ours.rpartition(".")
    if ours in ("conv1", "to_rgb1"):
        return f"synthesis.b4.{'conv1' if ours == 'conv1' else 'torgb'}"
    if name == "style":
        return f"mapping.fc{int(idx) - 1}"
    if name == "convs":
        return f"synthesis.b{2 ** (int(idx) // 2 + 3)}.conv{int(idx) % 2}"
    if name == "to_rgbs":
        return f"synthesis.b{2 ** (int(idx) + 3)}.torgb"
    j = int(idx.removeprefix("noise_"))  # noises.noise_{j}: b4.conv1, then convs.{j-1}
    return _ada_module("conv1" if j == 0 else f"convs.{j - 1}")


def nvidia_key(ours: str) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The stylegan2-ada key and transform that give our ``Generator`` key ``ours`` (first match in the table)."""
    for pattern, template, transform in KEY_TABLE:
        m = re.fullmatch(pattern, ours)
        if m:
            groups = m.groupdict()
            return template.format(m=_ada_module(groups["m"]) if "m" in groups else "", p=groups.get("p")), transform
    raise KeyError(f"no stylegan2-ada counterpart for Generator key {ours!r} in KEY_TABLE")


# --------------------------------------------------------------------------- hyper-parameters


def _synthesis_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """The synthesis options, as NVIDIA's ``legacy.py`` finds them (``kwargs.get('synthesis_kwargs', kwargs)``):
    stylegan2-ada's ``Generator(..., synthesis_kwargs={...})``, or the stylegan3 repository's ``networks_stylegan2``
    ``Generator(..., **synthesis_kwargs)``, which keeps them at the top level; there an absent ``conv_clamp`` is its
    ``SynthesisBlock`` default, 256 (ada's is None)."""
    if "synthesis_kwargs" in kw:
        return dict(kw["synthesis_kwargs"] or {})
    return {"conv_clamp": 256, **kw}


def _check_supported(kw: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Raise ``NotImplementedError`` for ada options our rosinality-layout generator cannot represent."""
    mk, sk = kw.get("mapping_kwargs") or {}, _synthesis_kwargs(kw)
    unsupported = {
        "img_channels": (kw.get("img_channels", 3), 3),
        "synthesis architecture": (sk.get("architecture", "skip"), "skip"),
        "synthesis activation": (sk.get("activation", "lrelu"), "lrelu"),
        "mapping activation": (mk.get("activation", "lrelu"), "lrelu"),
    }
    for what, (value, supported) in unsupported.items():
        if value != supported:
            raise NotImplementedError(f"stylegan2-ada {what}={value!r} is not supported (only {supported!r})")


def _mapping_layers(state: dict[str, torch.Tensor]) -> int:
    """Number of ``mapping.fc{i}`` layers, which must be contiguous from 0."""
    idx = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
    if not idx or idx != list(range(len(idx))):
        raise ValueError(f"{_ERR}: mapping layers fc{idx} are missing or not contiguous")
    return len(idx)


def _block_resolutions(state: dict[str, torch.Tensor]) -> list[int]:
    """Synthesis block resolutions ``[4, 8, ..., R]`` from the ``synthesis.b{res}.`` keys."""
    res = sorted({int(m.group(1)) for k in state if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    expected = [2**i for i in range(2, 2 + len(res))]
    if res != expected:
        raise ValueError(f"{_ERR}: synthesis blocks {res}, expected {expected}")
    return res


def _infer_channels(state: dict[str, torch.Tensor], resolutions: list[int]) -> dict[int, int]:
    """Feature channels per resolution from tensor shapes (``b4.const``, ``b{res}.conv1.weight``)."""
    if "synthesis.b4.const" not in state:
        raise ValueError(f"{_ERR}: missing synthesis.b4.const")
    channels = {4: int(state["synthesis.b4.const"].shape[0])}
    for res in resolutions[1:]:
        key = f"synthesis.b{res}.conv1.weight"
        if key not in state:
            raise ValueError(f"{_ERR}: missing {key}")
        channels[res] = int(state[key].shape[0])
    return channels


def _check_kwarg(kw: dict[str, Any], name: str, inferred: int) -> None:
    if name in kw and kw[name] is not None and int(kw[name]) != inferred:
        raise ValueError(f"{_ERR}: init kwarg {name}={kw[name]} but the tensors give {inferred}")


def _check_mapping_widths(state: dict[str, torch.Tensor], n_mlp: int, in_dim: int, w_dim: int) -> None:
    """Our mapping network has ``w_dim`` features in every layer (ada's ``layer_features`` may differ)."""
    for i in range(n_mlp):
        shape = tuple(state[f"mapping.fc{i}.weight"].shape)
        if shape != (w_dim, in_dim if i == 0 else w_dim):
            raise NotImplementedError(
                f"stylegan2-ada mapping layer fc{i} has shape {shape}; only layer_features == w_dim "
                f"({w_dim}) is supported"
            )


def _generator_kwargs(kw: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Our ``Generator`` keyword arguments from the tensor shapes, checked against ada's init kwargs."""
    mk, sk = kw.get("mapping_kwargs") or {}, _synthesis_kwargs(kw)
    n_mlp = _mapping_layers(state)
    embed = state.get("mapping.embed.weight")  # [embed_features, c_dim], conditional generators only
    c_dim, embed_features = (0, 0) if embed is None else (int(embed.shape[1]), int(embed.shape[0]))
    z_dim = int(state["mapping.fc0.weight"].shape[1]) - embed_features
    if z_dim < 1:
        raise NotImplementedError(f"stylegan2-ada z_dim={z_dim} (a generator of labels only) is not supported")
    w_dim = int(state[f"mapping.fc{n_mlp - 1}.weight"].shape[0])
    resolutions = _block_resolutions(state)
    channels = _infer_channels(state, resolutions)
    for name, value in (("z_dim", z_dim), ("c_dim", c_dim), ("w_dim", w_dim), ("img_resolution", resolutions[-1])):
        _check_kwarg(kw, name, value)
    _check_kwarg(mk, "num_layers", n_mlp)
    if c_dim:
        _check_kwarg(mk, "embed_features", embed_features)
    conv_clamp = sk.get("conv_clamp")
    cond = dict(c_dim=c_dim, embed_features=embed_features) if c_dim else {}  # unconditional: exactly as before
    return dict(
        **cond,
        z_dim=z_dim,
        w_dim=w_dim,
        img_resolution=resolutions[-1],
        n_mlp=n_mlp,
        channels=channels,
        lr_mlp=float(mk.get("lr_multiplier", 0.01)),
        blur_kernel=tuple(float(v) for v in sk.get("resample_filter", [1, 3, 3, 1])),
        conv_clamp=None if conv_clamp is None else float(conv_clamp),
    )


def _fir_kernel(taps: Any) -> torch.Tensor:
    """ada's ``setup_filter(taps)`` as a 2-D tensor: outer product for 1-D taps, normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 1:
        f = f[:, None] * f[None, :]
    return f / f.sum()


def _check_filters(state: dict[str, torch.Tensor], blur_kernel: tuple[float, ...]) -> tuple[torch.Tensor, list[str]]:
    """Every ada ``resample_filter`` buffer must equal ``setup_filter(blur_kernel)``: that filter and those keys."""
    expected = _fir_kernel(blur_kernel)
    keys = [k for k in state if k.endswith(".resample_filter")]
    for key in keys:
        f = state[key].detach().float()
        f2d = f[:, None] * f[None, :] if f.ndim == 1 else f
        if f2d.shape != expected.shape or not torch.allclose(f2d, expected, atol=1e-6):
            raise ValueError(f"{_ERR}: {key} does not match resample_filter {list(blur_kernel)}")
    return expected, keys


# --------------------------------------------------------------------------- conversion


def convert_ada_generator(ada: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Map an ada ``G_ema`` (from :func:`~inversion.models.safe_unpickle.read_ada_pickle`) to our ``Generator``.

    Returns ``(state_dict, generator_kwargs)``: rosinality key names plus ``w_avg``, and keyword arguments
    (``z_dim``, ``w_dim``, ``img_resolution``, ``n_mlp``, ``channels``, ``lr_mlp``, ``blur_kernel``,
    ``conv_clamp``; conditional generators also ``c_dim`` and ``embed_features``) so that
    ``stylegan2_generator(**generator_kwargs).load_state_dict(state_dict)`` is exact. Unsupported options raise
    ``NotImplementedError``; missing, mis-shaped or left-over tensors ``ValueError``.
    """
    state: dict[str, torch.Tensor] = ada["state_dict"]
    kw: dict[str, Any] = ada.get("init_kwargs") or {}
    _check_supported(kw, state)
    generator_kwargs = _generator_kwargs(kw, state)
    in_dim = generator_kwargs["z_dim"] + generator_kwargs.get("embed_features", 0)
    _check_mapping_widths(state, generator_kwargs["n_mlp"], in_dim, generator_kwargs["w_dim"])
    kernel, used = _check_filters(state, generator_kwargs["blur_kernel"])
    use_noise = bool(_synthesis_kwargs(kw).get("use_noise", True))
    with torch.device("meta"):
        expected = stylegan2_generator(**generator_kwargs).state_dict()

    out: dict[str, torch.Tensor] = {}
    for key, want in expected.items():
        if key.endswith((".blur.kernel", ".upsample.kernel")):
            src, value = "resample_filter", kernel * 4  # upfirdn2d gain = up**2
        elif not use_noise and (key.startswith("noises.") or key.endswith(".noise.weight")):
            src, value = "use_noise=False", torch.zeros(want.shape)
        elif key == "w_avg" and "mapping.w_avg" not in state:
            warnings.warn(f"{_ERR} has no mapping.w_avg (w_avg_beta=None); w_avg set to zeros", stacklevel=2)
            src, value = "no mapping.w_avg", torch.zeros(want.shape)
        else:
            src, transform = nvidia_key(key)
            if src not in state:
                raise ValueError(f"{_ERR}: missing tensor {src!r} (for our {key})")
            value = transform(state[src].detach().to(torch.float32).contiguous().clone())
            used.append(src)
        if tuple(value.shape) != tuple(want.shape):
            got = tuple(state[src].shape) if src in state else tuple(value.shape)
            raise ValueError(f"{_ERR}: {src} has shape {got}, which does not give our {key} {tuple(want.shape)} "
                             f"(converted: {tuple(value.shape)})")
        out[key] = value
    unused = sorted(set(state) - set(used))
    if unused:
        raise ValueError(f"{_ERR}: tensors with no counterpart in our Generator: {unused}")
    return out, generator_kwargs
