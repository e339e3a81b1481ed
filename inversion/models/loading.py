"""Load StyleGAN2 generators from real checkpoint files, chosen by file content (never by file name).

Supported:

* rosinality ``.pt`` — ``{'g_ema': state_dict, 'latent_avg': [w_dim]}`` (``stylegan2-ffhq-config-f.pt`` as
  used by pSp / e4e / ReStyle), or a rosinality training checkpoint (``g_ema`` without ``latent_avg``:
  ``w_avg`` is then estimated from seeded samples, with a warning). Keys are matched strictly.
* pSp / e4e / ReStyle checkpoints — the generator under ``state_dict['decoder.*']``, ``latent_avg`` → ``w_avg``.
* NVIDIA stylegan2-ada-pytorch ``.pkl`` — ``G_ema``, read with a restricted unpickler that executes nothing
  (:mod:`inversion.models.safe_unpickle`) and converted key by key (:mod:`inversion.models.nvidia_convert`);
  conditional ones (``c_dim > 0``) become a :class:`~inversion.models.stylegan2_cond.ConditionalGenerator`, as do
  our-layout state dicts with ``style.embed.*`` (their ``w_avg`` must be in the file: it is not estimated).
* NVIDIA StyleGAN3 ``.pkl`` (configs T and R) — ``G_ema`` read the same way into
  :class:`~inversion.models.stylegan3.StyleGAN3Generator`, which has NVIDIA's constructor keywords and key names:
  the pickle's ``_init_kwargs`` build it and its tensors load strictly, unchanged.

Every generator is loaded strictly (:func:`~inversion.models.state.load_state_strict`); ``latent_avg`` is read by
:func:`~inversion.models.state.normalize_latent_avg`.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from .state import CheckpointError, load_state_strict, normalize_latent_avg
from .stylegan2 import Generator
from .stylegan2_cond import stylegan2_generator
from .stylegan3 import StyleGAN3Generator

__all__ = [
    "load_generator",
    "generator_from_checkpoint",
    "generator_from_state_dict",
    "infer_generator_kwargs",
    "sniff_format",
    "stylegan3_from_pickle_data",
    "torch_load",
    "demo_generator",
    "demo_stylegan3",
]

WEIGHTS_HINT = (
    "Get the FFHQ config-f generator 'stylegan2-ffhq-config-f.pt' from the pSp / e4e / ReStyle model links "
    "(rosinality format), an NVIDIA stylegan2-ada-pytorch 'network-snapshot-*.pkl' or an NVIDIA StyleGAN3 "
    "'stylegan3-{t,r}-*.pkl', and pass its local path."
)


# Legacy (pre-zip) torch.save files start with the pickled magic number 0x1950a86a20f9469cfc6c.
_TORCH_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def sniff_format(path: str | os.PathLike) -> str:
    """Return 'torch' (torch.save zip or legacy file) or 'pickle' (plain pickle, e.g. NVIDIA's) from the bytes."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return "torch"
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:1] == b"\x80" and head[2:14] == _TORCH_LEGACY_MAGIC:
        return "torch"
    if head[:1] == b"\x80":
        return "pickle"
    raise CheckpointError(f"{path}: unknown file format (neither a torch.save file nor a pickle). {WEIGHTS_HINT}")


def torch_load(path: str | os.PathLike) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` (no code execution); clear errors on failure."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load objects other than tensors and plain data (weights_only=True): {e}"
        ) from e


def _mlp_indices(state: dict[str, torch.Tensor]) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.fullmatch(r"style\.(\d+)\.weight", k))})


def infer_generator_kwargs(state: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, Any]:
    """Derive ``Generator`` keyword arguments from rosinality-layout tensor shapes (``style.embed.weight``
    ``[embed_features, c_dim]``: a conditional generator, with ``c_dim`` and ``embed_features``)."""
    required = ["input.input", "conv1.conv.weight", "to_rgb1.conv.weight"]
    missing = [k for k in required if k not in state]
    mlp = _mlp_indices(state)
    if missing or not mlp:
        raise CheckpointError(
            f"{source}: not a rosinality StyleGAN2 generator state dict (missing {missing or ['style.*']})"
        )
    if mlp != list(range(1, len(mlp) + 1)):
        raise CheckpointError(f"{source}: mapping layers are not contiguous: style.{mlp}")
    num_rgbs = len({k.split(".")[1] for k in state if k.startswith("to_rgbs.")})
    img_resolution = 2 ** (num_rgbs + 2)
    channels = {4: int(state["input.input"].shape[1])}
    for i in range(num_rgbs):
        channels[2 ** (i + 3)] = int(state[f"convs.{2 * i}.conv.weight"].shape[1])
    embed = state.get("style.embed.weight")
    cond = {} if embed is None else dict(c_dim=int(embed.shape[1]), embed_features=int(embed.shape[0]))
    return dict(
        z_dim=int(state["style.1.weight"].shape[1]) - cond.get("embed_features", 0),
        w_dim=int(state[f"style.{mlp[-1]}.weight"].shape[0]),
        img_resolution=img_resolution,
        n_mlp=len(mlp),
        channels=channels,
        **cond,
    )


def generator_from_state_dict(
    state: dict[str, torch.Tensor],
    w_avg: torch.Tensor | None,
    source: str,
    generator_kwargs: dict[str, Any] | None = None,
) -> Generator:
    """Build a ``Generator`` (``ConditionalGenerator`` for ``c_dim > 0``) matching ``state`` and load it strictly
    (shapes checked key by key).

    ``w_avg`` (a ``latent_avg`` in any layout :func:`normalize_latent_avg` reads) replaces a ``w_avg`` in ``state``;
    with neither, the new generator's zeros are kept.
    """
    kwargs = generator_kwargs or infer_generator_kwargs(state, source)
    G = stylegan2_generator(**kwargs)
    state = dict(state)
    if w_avg is not None:
        state["w_avg"] = normalize_latent_avg(w_avg, num_ws=G.num_ws, w_dim=G.w_dim, source=source)[0]
    elif "w_avg" not in state:
        state["w_avg"] = G.w_avg
    load_state_strict(G, state, source, what=f"generator weights (StyleGAN2 of {kwargs['img_resolution']} px)")
    return G


def _check_expectations(G: Generator, path: Path, img_resolution: int | None, num_ws: int | None,
                        w_dim: int | None) -> None:
    problems = []
    if img_resolution is not None and G.img_resolution != img_resolution:
        problems.append(f"resolution {G.img_resolution} in the file, {img_resolution} in the config")
    if num_ws is not None and G.num_ws != num_ws:
        problems.append(f"num_ws {G.num_ws} in the file, {num_ws} in the config")
    if w_dim is not None and G.w_dim != w_dim:
        problems.append(f"w_dim {G.w_dim} in the file, {w_dim} in the config")
    if problems:
        raise CheckpointError(f"{path}: generator does not match the configuration: " + "; ".join(problems))


def generator_from_checkpoint(obj: Any, path: str | os.PathLike) -> Generator | StyleGAN3Generator:
    """The generator of a loaded torch checkpoint: rosinality ``g_ema`` or pSp-family ``state_dict['decoder.*']``;
    or a bare NVIDIA StyleGAN3 ``Generator.state_dict()`` (stylegan3-editing's ``sg3-r-ffhq-1024.pt``), whose
    settings are inferred from its tensors (:mod:`inversion.models.sg3_infer`; ``w_avg`` is in the file).

    Without ``latent_avg`` in the file, ``w_avg`` is estimated from 10,000 seeded mapping samples (with a warning).
    """
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}. {WEIGHTS_HINT}")
    from .sg3_infer import is_stylegan3_state, stylegan3_from_state_dict

    if is_stylegan3_state(obj, ""):
        return stylegan3_from_state_dict(dict(obj), str(path), keep_transform=True)
    if "g_ema" in obj:
        state, source = obj["g_ema"], str(path)
    elif "state_dict" in obj and any(k.startswith("decoder.") for k in obj["state_dict"]):
        state = {k[len("decoder."):]: v for k, v in obj["state_dict"].items() if k.startswith("decoder.")}
        source = f"{path} (decoder.*)"
    else:
        raise CheckpointError(
            f"{path}: a torch checkpoint without a generator (keys {sorted(obj)[:10]}); expected 'g_ema' "
            f"(rosinality) or 'state_dict' with 'decoder.*' (pSp/e4e/ReStyle). {WEIGHTS_HINT}"
        )
    latent_avg = obj.get("latent_avg")
    G = generator_from_state_dict(state, latent_avg, source)
    if latent_avg is None and G.c_dim > 0:
        if "w_avg" not in state:  # W's mean depends on the labels' distribution, which the file does not give
            raise CheckpointError(f"{source}: a conditional generator (c_dim={G.c_dim}) without 'latent_avg' or "
                                  "'w_avg'; its w_avg cannot be estimated without the training labels")
    elif latent_avg is None:
        warnings.warn(
            f"{path} has no 'latent_avg': estimating w_avg from 10,000 seeded samples of the mapping network",
            stacklevel=3,
        )
        G.compute_w_avg(10_000, seed=0)
    return G


def _load_ada_generator(path: Path) -> Generator | StyleGAN3Generator:
    from .nvidia_convert import convert_ada_generator
    from .safe_unpickle import read_ada_pickle

    ada = read_ada_pickle(path)
    if ada["kind"] == "stylegan3":
        return stylegan3_from_pickle_data(ada, f"{path} (G_ema)")
    state, kwargs = convert_ada_generator(ada)
    return generator_from_state_dict(state, None, f"{path} (G_ema)", generator_kwargs=kwargs)


def stylegan3_from_pickle_data(ada: dict[str, Any], source: str) -> StyleGAN3Generator:
    """A :class:`StyleGAN3Generator` from :func:`~inversion.models.safe_unpickle.read_ada_pickle`'s output: built
    from the pickle's init kwargs (an option we do not have is a ``NotImplementedError`` naming it), weights
    loaded strictly (a missing, unexpected or mis-shaped tensor is a ``CheckpointError`` naming it)."""
    import inspect

    kwargs = dict(ada["init_kwargs"])
    kwargs.pop("class_name", None)
    allowed = set(inspect.signature(StyleGAN3Generator).parameters)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise NotImplementedError(f"{source}: StyleGAN3 generator option(s) {unknown} are not supported "
                                  f"(supported: {sorted(allowed)})")
    mapping = dict(kwargs.get("mapping_kwargs") or {})
    from .stylegan3 import MappingNetwork

    m_allowed = set(inspect.signature(MappingNetwork).parameters) - {"z_dim", "c_dim", "w_dim", "num_ws"}
    m_unknown = sorted(set(mapping) - m_allowed)
    if m_unknown:
        raise NotImplementedError(f"{source}: StyleGAN3 mapping option(s) {m_unknown} are not supported "
                                  f"(supported: {sorted(m_allowed)})")
    G = StyleGAN3Generator(**kwargs)
    load_state_strict(G, ada["state_dict"], source)
    return G


def load_generator(
    path: str | os.PathLike | None,
    device: torch.device | str = "cpu",
    *,
    img_resolution: int | None = None,  # Expected output resolution (error if the file differs).
    num_ws: int | None = None,  # Expected number of W+ layers (error if the file differs).
    w_dim: int | None = None,  # Expected W dimensionality (error if the file differs).
) -> Generator | StyleGAN3Generator:
    """Load a frozen generator (eval mode, ``requires_grad=False``) from a local file: StyleGAN2, or StyleGAN3
    from an NVIDIA pickle.

    The format is detected from the bytes: rosinality / pSp-family torch files or NVIDIA pickles.
    """
    if path is None:  # a config whose paths.stylegan* key is unset
        raise FileNotFoundError("no generator file given (path is null): set the generator config's paths key "
                                "(paths.stylegan2_ffhq, paths.stylegan2_256, paths.stylegan3_t_ffhq or "
                                f"paths.stylegan3_r_ffhq) or generator.path to a local file. {WEIGHTS_HINT}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"generator file not found: {path}. {WEIGHTS_HINT}")
    fmt = sniff_format(path)
    G = generator_from_checkpoint(torch_load(path), path) if fmt == "torch" else _load_ada_generator(path)
    _check_expectations(G, path, img_resolution, num_ws, w_dim)
    return G.eval().requires_grad_(False).to(device)


def demo_generator(
    *,
    img_resolution: int = 64,  # Output resolution of the demo model.
    z_dim: int = 64,  # Z dimensionality.
    w_dim: int = 64,  # W dimensionality.
    n_mlp: int = 4,  # Mapping layers.
    channel_max: int = 32,  # Feature channels at every resolution.
    seed: int = 0,  # Seed of the weights: same seed, same generator, on any machine.
    output_std: float = 0.5,  # toRGB gains are calibrated so images have this std (inside [-1, 1]).
    calibration_samples: int = 64,  # Images rendered to measure that std.
    device: torch.device | str = "cpu",  # Where w_avg and the calibration are computed, and the result lives.
) -> Generator:
    """A small StyleGAN2 built deterministically from a seed: the embedded demo needs no download.

    Random StyleGAN2 weights give outputs with std 1-2; the toRGB weights are scaled once so that images
    have ``output_std`` on average, and ``w_avg`` is the mean of 10,000 seeded mapping outputs. The weights are
    drawn on the CPU (the same on every machine); ``w_avg`` and the calibration run on ``device`` (a GPU gives
    the same values up to float round-off, much faster at full size: ``img_resolution=1024, z_dim=512,
    w_dim=512, n_mlp=8, channel_max=512`` is config-f with random weights).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(
            z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, n_mlp=n_mlp, channel_max=channel_max
        )
    G = G.eval().requires_grad_(False).to(device)
    G.compute_w_avg(10_000, seed=seed)
    with torch.no_grad():
        z = torch.randn(calibration_samples, z_dim, generator=torch.Generator().manual_seed(seed + 1))
        std = torch.cat([G(zb.to(device)).flatten() for zb in z.split(64)]).std().item()
        for rgb in [G.to_rgb1, *G.to_rgbs]:
            rgb.conv.weight.mul_(output_std / std)
    return G


def demo_stylegan3(
    *,
    img_resolution: int = 64,  # Output resolution.
    z_dim: int = 64,  # Z dimensionality.
    w_dim: int = 64,  # W dimensionality.
    channel_base: int = 1024,  # NVIDIA's channel_base (channels = channel_base / 2 / cutoff, capped).
    channel_max: int = 32,  # Feature channels at most.
    use_radial_filters: bool = False,  # Config R (radial down filters, 1x1 convolutions) instead of T.
    seed: int = 0,  # Seed of the weights: same seed, same generator, on any machine.
    output_std: float = 0.5,  # Output scale calibrated so images have this std.
    calibration_samples: int = 16,  # Samples that set the magnitude EMAs and the output scale.
    device: torch.device | str = "cpu",
) -> StyleGAN3Generator:
    """A small StyleGAN3 (config T, or R) built deterministically from a seed, for CPU demos and tests.

    Random weights with NVIDIA's initialisation; ``w_avg`` is the mean of 10,000 seeded mapping outputs; every
    layer's ``magnitude_ema`` (which NVIDIA's training tracks; ones in a fresh network) is set from one seeded
    batch, layer by layer, and ``output_scale`` so that images have ``output_std`` on average.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN3Generator(z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=img_resolution, img_channels=3,
                               channel_base=channel_base, channel_max=channel_max,
                               conv_kernel=1 if use_radial_filters else 3, use_radial_filters=use_radial_filters)
    G = G.eval().requires_grad_(False).to(device)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(10_000, z_dim, generator=gen).to(device)
        G.mapping.w_avg.copy_(torch.cat([G.mapping(zb)[:, 0] for zb in z.split(2_000)]).mean(0))
        ws = G.mapping(torch.randn(calibration_samples, z_dim, generator=gen).to(device))
        layers = [getattr(G.synthesis, n) for n in G.synthesis.layer_names]
        betas = [layer.magnitude_ema_beta for layer in layers]
        for layer in layers:
            layer.magnitude_ema_beta = 0.0  # the EMA becomes this batch's input magnitude, used at once
        G.synthesis(ws, update_emas=True)
        for layer, beta in zip(layers, betas):
            layer.magnitude_ema_beta = beta
        G.synthesis.output_scale *= output_std / G.synthesis(ws).std().item()
    return G
