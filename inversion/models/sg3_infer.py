"""A :class:`~inversion.models.stylegan3.StyleGAN3Generator` from a bare NVIDIA StyleGAN3 ``Generator.state_dict()``.

Files that store the generator as tensors only (the ``decoder.*`` part of the stylegan3-editing encoder checkpoints,
their ``sg3-r-ffhq-1024.pt``) carry no constructor arguments. They are inferred from the tensors:

* mapping: ``mapping.fc{i}`` (count = ``mapping_kwargs.num_layers``), ``z_dim`` = ``fc0`` inputs (minus ``w_dim``
  with an ``embed`` layer, whose inputs are ``c_dim``), ``w_dim`` = the last layer's outputs;
* synthesis: the layer names ``L{i}_{size}_{channels}`` give ``num_layers`` (last index), ``img_resolution`` /
  ``img_channels`` (the last layer's size / channels) and the channel schedule, from which ``channel_max`` (the
  largest width) and ``channel_base`` (a power of two, else the value implied by an uncapped layer, that reproduces
  every width) follow; ``margin_size`` from the first layer's size;
* ``conv_kernel`` = the first layer's kernel width (1 = config R), ``use_radial_filters`` = a 2-D down filter.

Everything else keeps NVIDIA's defaults (``num_critical=2``, cutoffs / stopbands, ``filter_size=6``,
``lrelu_upsampling=2``, ``output_scale=0.25``, ``conv_clamp=256``), which NVIDIA's ``train.py`` never changes.
The built model must then have the file's keys and shapes, and its designed low-pass filters must equal the
file's (they encode the cutoff / sampling-rate schedule), otherwise one :class:`CheckpointError` names the file
and what differs.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from .state import CheckpointError, load_state_strict
from .stylegan3 import StyleGAN3Generator, synthesis_schedule

__all__ = ["is_stylegan3_state", "infer_stylegan3_kwargs", "stylegan3_from_state_dict", "TRANSFORM_KEY"]

TRANSFORM_KEY = "synthesis.input.transform"  # the user transform buffer: not a weight (stored batch-shaped)
_LAYER = re.compile(r"synthesis\.L(\d+)_(\d+)_(\d+)\.")
_FC = re.compile(r"mapping\.fc(\d+)\.weight")
# NVIDIA's magnitude EMA decay of the published configs (0.5 ** (32 / 20k)); only used when training.
MAGNITUDE_EMA_BETA = 0.9988915792636801


def is_stylegan3_state(state: dict[str, Any], prefix: str = "") -> bool:
    """Whether ``state`` holds a StyleGAN3 generator under ``prefix`` (``synthesis.input.*`` or ``synthesis.L*``)."""
    n = len(prefix)
    return any(k.startswith(prefix) and (k[n:].startswith("synthesis.input.") or _LAYER.match(k[n:]))
               for k in state)


def _shape(state: dict[str, Any], key: str, source: str) -> tuple[int, ...]:
    value = state.get(key)
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{source}: StyleGAN3 generator tensor {key!r} is missing")
    return tuple(value.shape)


def _layers(state: dict[str, Any], source: str) -> list[tuple[int, int, int]]:
    """``(index, size, channels)`` of every ``synthesis.L{i}_{size}_{channels}`` layer, in order."""
    found = {(int(m.group(1)), int(m.group(2)), int(m.group(3))) for k in state if (m := _LAYER.match(k))}
    layers = sorted(found)
    if [i for i, _, _ in layers] != list(range(len(layers))) or len(layers) < 4:
        raise CheckpointError(f"{source}: StyleGAN3 synthesis layers are not L0..Ln with one name each: "
                              f"{[f'L{i}_{s}_{c}' for i, s, c in layers][:20]}")
    return layers


def _channel_base(layers: list[tuple[int, int, int]], kw: dict[str, Any], channel_max: int) -> int | None:
    """The channel_base whose schedule reproduces every layer's width (powers of two first)."""
    want = [c for _, _, c in layers]

    def fits(base: float) -> bool:
        s = synthesis_schedule(kw["img_resolution"], kw["img_channels"], base, channel_max, kw["num_layers"])
        return [int(c) for c in s["channels"]] == want

    cutoffs = synthesis_schedule(kw["img_resolution"], kw["img_channels"], 1, 1, kw["num_layers"])["cutoffs"]
    implied = [int(round(2 * c * f)) for (_, _, c), f in zip(layers[:-1], cutoffs[:-1]) if c < channel_max]
    for base in [2**k for k in range(31)] + implied:
        if fits(base):
            return base
    return None


def infer_stylegan3_kwargs(
    state: dict[str, Any],  # A Generator state dict (keys 'mapping.*', 'synthesis.*').
    source: str,  # The file (and part), named in errors.
) -> dict[str, Any]:
    """NVIDIA ``Generator`` keyword arguments implied by the tensors of ``state`` (see the module docstring)."""
    fcs = sorted(int(m.group(1)) for k in state if (m := _FC.fullmatch(k)))
    if not fcs or fcs != list(range(len(fcs))):
        raise CheckpointError(f"{source}: StyleGAN3 mapping layers are not fc0..fcN: {fcs}")
    w_dim = _shape(state, f"mapping.fc{fcs[-1]}.weight", source)[0]
    z_in = _shape(state, "mapping.fc0.weight", source)[1]
    c_dim = _shape(state, "mapping.embed.weight", source)[1] if "mapping.embed.weight" in state else 0
    layers = _layers(state, source)
    first = f"synthesis.L{layers[0][0]}_{layers[0][1]}_{layers[0][2]}"
    kw: dict[str, Any] = dict(
        z_dim=z_in - (w_dim if c_dim else 0), c_dim=c_dim, w_dim=w_dim,
        img_resolution=layers[-1][1], img_channels=layers[-1][2],
        mapping_kwargs={"num_layers": len(fcs)}, num_layers=len(layers) - 1,
    )
    channel_max = max(c for _, _, c in layers[:-1])
    base = _channel_base(layers, kw, channel_max)
    if base is None:
        raise CheckpointError(f"{source}: no StyleGAN3 channel schedule gives the layer widths "
                              f"{[c for _, _, c in layers]} ({kw['num_layers']} layers, {kw['img_resolution']} px)")
    rate0 = synthesis_schedule(kw["img_resolution"], kw["img_channels"], base, channel_max,
                               kw["num_layers"])["sampling_rates"][0]
    margin = (layers[0][1] - rate0) / 2
    kw.update(channel_base=base, channel_max=channel_max,
              margin_size=int(margin) if margin == int(margin) and margin >= 0 else 10,
              conv_kernel=_shape(state, f"{first}.weight", source)[-1],
              use_radial_filters=any(k.endswith(".down_filter") and v.ndim == 2 for k, v in state.items()
                                     if isinstance(v, torch.Tensor)),
              magnitude_ema_beta=MAGNITUDE_EMA_BETA)
    return kw


def stylegan3_from_state_dict(
    state: dict[str, Any],  # A Generator state dict; 'synthesis.input.transform': see keep_transform.
    source: str,  # The file (and part), named in errors.
    *,
    keep_transform: bool = False,  # True: a [3, 3] stored transform is kept (a bare NVIDIA state dict); else identity
) -> StyleGAN3Generator:
    """Build the inferred :class:`StyleGAN3Generator` and load ``state`` strictly (keys, shapes, filter values).

    The user transform ``synthesis.input.transform`` is not read (stylegan3-editing saves it batch-shaped, and
    skips it when loading); the generator gets the identity, as their encoders render."""
    transform = state.get(TRANSFORM_KEY)
    state = {k: v for k, v in state.items() if k != TRANSFORM_KEY}
    kwargs = infer_stylegan3_kwargs(state, source)
    G = StyleGAN3Generator(**kwargs)
    hint = f"StyleGAN3 arguments inferred from the file: {kwargs}"
    what = f"generator weights (StyleGAN3 of {kwargs['img_resolution']} px)"
    designed = {k: v.clone() for k, v in G.state_dict().items() if k.endswith("_filter")}
    load_state_strict(G, state, source, what=what, required=lambda k: k != TRANSFORM_KEY, hint=hint)
    # the filters encode the cutoff / sampling-rate schedule, which the padding and resampling factors assume
    bad = [k for k, f in designed.items()
           if not torch.allclose(state[k].float(), f, rtol=0, atol=1e-5 * float(f.abs().max()))]
    if bad:
        raise CheckpointError(f"{source}: the file's low-pass filters {bad[:4]} differ from those of the inferred "
                              f"StyleGAN3 schedule (non-default cutoffs or sampling rates are not supported). {hint}")
    keep = keep_transform and isinstance(transform, torch.Tensor) and tuple(transform.shape) == (3, 3)
    with torch.no_grad():
        eye = torch.as_tensor(np.eye(3), dtype=torch.float32)
        G.synthesis.input.transform.copy_(transform.float() if keep else eye)
    return G
