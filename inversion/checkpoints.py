"""Build ready inverters from checkpoint files: the official pSp / e4e / ReStyle files and our own export.

Official files (``psp_ffhq_encode.pt``, ``e4e_ffhq_encode.pt``, ``restyle_psp_ffhq_encode.pt``,
``restyle_e4e_ffhq_encode.pt``) are dicts with ``state_dict`` (``encoder.*``, ``decoder.*``), ``latent_avg``
and ``opts``. Their encoder keys equal ours, so the mapping is a prefix strip, checked key by key.

The encoders of ``yuval-alaluf/stylegan3-editing`` (ReStyle-pSp / ReStyle-e4e over StyleGAN3:
``restyle_pSp_ffhq.pt``, ``restyle_e4e_ffhq.pt``) have the same layout, with the full NVIDIA StyleGAN3 ``Generator``
state dict under ``decoder.*``, ``latent_avg`` = its ``w_avg`` [512] and ``opts`` holding ``pathlib`` paths. They are
recognised by their decoder keys (``decoder.synthesis.input.*`` / ``decoder.synthesis.L<i>_<size>_<ch>.*``); the
generator's constructor arguments are inferred from the tensors (:mod:`inversion.models.sg3_infer`) and its
batch-shaped ``synthesis.input.transform`` is replaced by the identity, as their encoders render.

Our export (:func:`save_inverter`) holds the encoder's class and keyword arguments, its weights,
``latent_avg``, the inverter settings and a *reference* to the generator (its config), not a copy of it.
"""

from __future__ import annotations

import inspect
import math
import os
import pathlib
from pathlib import Path
from typing import Any

import torch

from .imageio import atomic_save
from .inverter import Inverter
from .models.loading import generator_from_checkpoint, sniff_format, torch_load
from .models.sg3_infer import is_stylegan3_state, stylegan3_from_state_dict
from .models.state import CheckpointError, import_target, load_state_strict, normalize_latent_avg
from .tasks import InputSpec

__all__ = ["load_inverter", "save_inverter", "inverter_from_official", "inverter_from_stylegan3_editing",
           "OFFICIAL_ENCODERS", "INVERTER_FORMAT", "load_checkpoint_dict"]

INVERTER_FORMAT = "inversion.inverter/v1"  # the 'format' entry of our export (save_inverter)

# official encoder_type -> (our class path, residual ReStyle encoder?)
OFFICIAL_ENCODERS: dict[str, tuple[str, bool]] = {
    "GradualStyleEncoder": ("inversion.encoders.GradualStyleEncoder", False),
    "BackboneEncoderUsingLastLayerIntoW": ("inversion.encoders.WEncoder", False),
    "Encoder4Editing": ("inversion.encoders.Encoder4Editing", False),
    "BackboneEncoder": ("inversion.encoders.BackboneEncoder", True),
    "ResNetBackboneEncoder": ("inversion.encoders.ResNetBackboneEncoder", True),
    "ProgressiveBackboneEncoder": ("inversion.encoders.ProgressiveBackboneEncoder", True),
    "ResNetProgressiveBackboneEncoder": ("inversion.encoders.ResNetProgressiveBackboneEncoder", True),
}


# units per stage of the IR-SE bodies (by num_layers) and of ResNet-34
_IRSE_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
_RESNET34_UNITS = (3, 4, 6, 3)


def _infer_body(enc: dict[str, torch.Tensor], resnet: bool, source: str) -> dict[str, Any]:
    """Stage widths (and IR-SE depth) from the encoder weights, so slimmed official-layout files load too."""
    pattern = "body.{}.conv1.weight" if resnet else "body.{}.res_layer.1.weight"
    n_units = len({k.split(".")[1] for k in enc if k.startswith("body.")})
    if resnet:
        units, extra = _RESNET34_UNITS, {}
    else:
        depth = {sum(u): n for n, u in _IRSE_UNITS.items()}.get(n_units)
        if depth is None:
            raise CheckpointError(f"{source}: encoder body has {n_units} units, not an IR-SE 50/100/152")
        units, extra = _IRSE_UNITS[depth], {"num_layers": depth, "mode": "ir_se"}
    if n_units != sum(units):
        raise CheckpointError(f"{source}: encoder body has {n_units} units, expected {sum(units)}")
    firsts = [sum(units[:i]) for i in range(4)]
    try:
        channels = [int(enc[pattern.format(i)].shape[0]) for i in firsts]
    except KeyError as e:
        raise CheckpointError(f"{source}: encoder weights lack {e}") from e
    return {"channels": channels, **extra}


# pathlib classes pickled inside stylegan3-editing's opts (dataclasses.asdict of options with Path fields). They are
# read as the *pure* path classes (which do no I/O and build on any OS), under the names the pickle uses.
_PATH_GLOBALS: list[tuple[type, str]] = [
    (cls, f"{module}.{name}")
    for module in ("pathlib", "pathlib._local")
    for name, cls in (("PosixPath", pathlib.PurePosixPath), ("PurePosixPath", pathlib.PurePosixPath),
                      ("WindowsPath", pathlib.PureWindowsPath), ("PureWindowsPath", pathlib.PureWindowsPath))
]


def load_checkpoint_dict(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` (no code execution) that also reads ``pathlib`` paths (as pure paths): the
    only non-tensor, non-plain objects the official checkpoints hold. Nothing else is allow-listed."""
    with torch.serialization.safe_globals(_PATH_GLOBALS):
        return torch_load(path)


def _check_official(ckpt: dict, source: str) -> tuple[dict, dict, str]:
    opts = ckpt.get("opts")
    state = ckpt.get("state_dict")
    if not isinstance(opts, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{source}: not a pSp/e4e/ReStyle checkpoint (needs 'state_dict' and 'opts')")
    enc_type = opts.get("encoder_type")
    if enc_type not in OFFICIAL_ENCODERS:
        supported = sorted(OFFICIAL_ENCODERS)
        raise CheckpointError(f"{source}: unsupported encoder_type {enc_type!r}; supported: {supported}")
    other = sorted({k.split(".")[0] for k in state} - {"encoder", "decoder"})
    if other:
        raise CheckpointError(f"{source}: unexpected state_dict prefixes {other} (expected encoder.*, decoder.*)")
    return opts, state, enc_type


def _official_encoder(state: dict, enc_type: str, in_channels: int, num_ws: int, w_dim: int,
                      source: str, input_size: int | list[int] = 256) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The encoder of an official checkpoint (widths inferred from ``encoder.*``), loaded strictly."""
    target, _ = OFFICIAL_ENCODERS[enc_type]
    enc_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    kwargs: dict[str, Any] = dict(num_ws=num_ws, w_dim=w_dim, in_channels=in_channels, input_size=input_size)
    kwargs.update(_infer_body(enc_state, "ResNet" in enc_type, source))
    encoder = import_target(target, source)(**kwargs)
    load_state_strict(encoder, enc_state, source, what="encoder weights")
    return encoder, {"_target_": target, **kwargs}


def inverter_from_official(ckpt: dict, path: str | os.PathLike) -> Inverter:
    """Build an :class:`Inverter` from a loaded official pSp / e4e / ReStyle checkpoint dict (StyleGAN2), or from
    a stylegan3-editing one (StyleGAN3 decoder: :func:`inverter_from_stylegan3_editing`)."""
    source = str(path)
    if isinstance(ckpt.get("state_dict"), dict) and is_stylegan3_state(ckpt["state_dict"], "decoder."):
        return inverter_from_stylegan3_editing(ckpt, path)
    opts, state, enc_type = _check_official(ckpt, source)
    G = generator_from_checkpoint(ckpt, Path(path))
    output_size = opts.get("output_size", G.img_resolution)
    n_styles = int(math.log2(output_size)) * 2 - 2
    if output_size != G.img_resolution or n_styles != G.num_ws:
        raise CheckpointError(f"{source}: opts.output_size={output_size} but the decoder makes {G.img_resolution} px")
    residual = OFFICIAL_ENCODERS[enc_type][1]
    start_avg = bool(opts.get("start_from_latent_avg", True)) or residual
    return _official_inverter(ckpt, source, G, state, opts, enc_type, start_from_latent_avg=start_avg,
                              num_iters=int(opts.get("n_iters_per_batch", 5)) if residual else 1)


def official_geometry(opts: dict, resolution: int) -> dict[str, Any]:
    """The encoder input size and content box of an official file: 256 px, the whole frame, except e4e / ReStyle's
    ``cars_encode`` (192x256 inputs; the cars generator's 512x384 picture sits in rows 1/8 .. 7/8 of its frame,
    ``y_hat[:, :, 32:224, :]`` of the 256 px face_pool, ``[64:448]`` of a 512 px render)."""
    if opts.get("dataset_type") == "cars_encode":
        return dict(encoder_size=[192, 256], content_box=[resolution // 8, resolution * 7 // 8, 0, resolution])
    return dict(encoder_size=256)


def _official_inverter(ckpt: dict, source: str, G: torch.nn.Module, state: dict, opts: dict, enc_type: str, *,
                       start_from_latent_avg: bool, num_iters: int) -> Inverter:
    """The :class:`Inverter` of an official checkpoint around its decoder ``G``: the encoder (strict), the
    ``latent_avg`` (None: the decoder's ``w_avg``), the official 256 px input and ``face_pool``, and what the
    encoder reads (pSp's image-to-image tasks: ``label_nc`` / ``input_nc`` -> :class:`InputSpec`)."""
    residual = OFFICIAL_ENCODERS[enc_type][1]
    in_channels = int(opts.get("input_nc", 6 if residual else 3))
    if residual and in_channels != 6:
        raise CheckpointError(f"{source}: ReStyle encoder {enc_type} with input_nc={in_channels}, expected 6")
    input_spec = InputSpec() if residual else InputSpec.from_official_opts(opts, source)
    geometry = official_geometry(opts, G.img_resolution)
    encoder, encoder_config = _official_encoder(state, enc_type, in_channels, G.num_ws, G.w_dim, source,
                                                geometry["encoder_size"])
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None:
        latent_avg = normalize_latent_avg(latent_avg, num_ws=G.num_ws, w_dim=G.w_dim, source=f"{source} (latent_avg)")
    inverter = Inverter(
        encoder=encoder,
        generator=G,
        num_iters=num_iters,
        residual=residual,
        start_from_latent_avg=start_from_latent_avg,
        latent_avg=latent_avg,
        resize_mode="adaptive_avg",
        input_spec=input_spec,
        **geometry,
    )
    inverter.encoder_config = encoder_config
    return inverter


def inverter_from_stylegan3_editing(ckpt: dict, path: str | os.PathLike) -> Inverter:
    """Build an :class:`Inverter` from a loaded stylegan3-editing ReStyle-pSp / ReStyle-e4e checkpoint dict.

    Their ``run_on_batch`` is :meth:`Inverter.invert` here: step 0 encodes ``cat(x, avg_image)`` (``latent_avg``
    rendered with the identity transform, ``AdaptiveAvgPool2d(256)``) and adds ``latent_avg``; step ``t`` encodes
    ``cat(x, pool(y_{t-1}))`` and adds ``ws_{t-1}``; renders are full-resolution ``synthesis(ws)`` with the identity
    transform (float32). ``opts.n_iters_per_batch`` (default 3) steps. The decoder's constructor arguments are
    inferred from its tensors; a missing, unexpected or mis-shaped tensor is one :class:`CheckpointError`."""
    source = str(path)
    opts, state, enc_type = _check_official(ckpt, source)
    if not OFFICIAL_ENCODERS[enc_type][1]:
        residual_types = sorted(k for k, (_, res) in OFFICIAL_ENCODERS.items() if res)
        raise CheckpointError(f"{source}: a StyleGAN3 (stylegan3-editing) checkpoint with encoder_type {enc_type!r}; "
                              f"their encoders are ReStyle ones: {residual_types}")
    dec_state = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    G = stylegan3_from_state_dict(dec_state, f"{source} (decoder.*)").eval().requires_grad_(False)
    return _official_inverter(ckpt, source, G, state, opts, enc_type, start_from_latent_avg=True,
                              num_iters=int(opts.get("n_iters_per_batch", 3)))


def save_inverter(
    inverter: Inverter,
    path: str | os.PathLike,
    *,
    encoder_config: dict[str, Any],  # {'_target_': 'inversion.encoders.X', **constructor kwargs}
    generator_config: dict[str, Any],  # Hydra config of the generator (a reference, not its weights)
    extra: dict[str, Any] | None = None,  # Plain metadata (training step, config) to keep alongside.
) -> Path:
    """Export a small inference checkpoint (atomically)."""
    obj = {
        "format": INVERTER_FORMAT,
        "encoder": dict(encoder_config),
        "encoder_state_dict": {k: v.detach().cpu() for k, v in inverter.encoder.state_dict().items()},
        "latent_avg": inverter.latent_avg.detach().cpu(),
        "inverter": dict(
            num_iters=inverter.num_iters,
            residual=inverter.residual,
            start_from_latent_avg=inverter.start_from_latent_avg,
            encoder_size=inverter.encoder_size,
            content_box=None if inverter.content_box is None else list(inverter.content_box),
            resize_mode=inverter.resize_mode,
            input_spec=inverter.input_spec.as_dict(),
        ),
        "generator": dict(generator_config),
        "generator_summary": dict(img_resolution=inverter.generator.img_resolution,
                                  num_ws=inverter.generator.num_ws, w_dim=inverter.generator.w_dim),
        "extra": extra or {},
    }
    return atomic_save(obj, path)


def _inverter_from_ours(ckpt: dict, path: Path, generator_path: str | None,
                        device: torch.device | str = "cpu") -> Inverter:
    source = str(path)
    gen_cfg = dict(ckpt["generator"])
    if generator_path is not None:
        gen_cfg["path"] = str(generator_path)
    target = gen_cfg.pop("_target_", None)
    if target is None:
        raise CheckpointError(f"{source}: generator reference has no _target_")
    if target.endswith("load_generator") and not gen_cfg.get("path"):
        raise CheckpointError(f"{source}: the generator file is not recorded; pass generator_path=")
    factory = import_target(target, source)
    if "device" in inspect.signature(factory).parameters:  # build it where it will run, not where it was trained
        gen_cfg["device"] = device
    G = factory(**gen_cfg)
    summary = ckpt.get("generator_summary", {})
    got = dict(img_resolution=G.img_resolution, num_ws=G.num_ws, w_dim=G.w_dim)
    if summary and summary != got:
        raise CheckpointError(f"{source}: the referenced generator {got} does not match the one trained with {summary}")
    enc_cfg = dict(ckpt["encoder"])
    encoder = import_target(enc_cfg.pop("_target_"), source)(**enc_cfg)
    load_state_strict(encoder, ckpt["encoder_state_dict"], source, what="encoder weights")
    latent_avg = normalize_latent_avg(ckpt["latent_avg"], num_ws=G.num_ws, w_dim=G.w_dim, source=source)
    settings = dict(ckpt["inverter"])
    settings["input_spec"] = InputSpec.from_dict(settings.get("input_spec"))  # absent in older exports: RGB
    inverter = Inverter(encoder=encoder, generator=G.eval().requires_grad_(False), latent_avg=latent_avg, **settings)
    inverter.encoder_config = dict(ckpt["encoder"])
    return inverter


def load_inverter(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    *,
    dtype: torch.dtype | None = None,  # e.g. torch.bfloat16 on GPU; None keeps fp32.
    generator_path: str | os.PathLike | None = None,  # Our checkpoints: where the generator file is now.
) -> Inverter:
    """A ready, frozen inverter (eval mode) from an official pSp/e4e/ReStyle file (StyleGAN2, or StyleGAN3 from
    stylegan3-editing) or one of ours. Files are read with ``weights_only=True`` (:func:`load_checkpoint_dict`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"inverter checkpoint not found: {path}. Official pSp / e4e / ReStyle files come from those "
            "projects' model links; ours are written by train.py (export/*.pt)."
        )
    if sniff_format(path) != "torch":
        raise CheckpointError(f"{path}: not a torch checkpoint (an inverter file is written with torch.save)")
    ckpt = load_checkpoint_dict(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(ckpt).__name__}")
    if ckpt.get("format") == INVERTER_FORMAT:
        inverter = _inverter_from_ours(ckpt, path, None if generator_path is None else str(generator_path), device)
    elif "opts" in ckpt and "state_dict" in ckpt:
        inverter = inverter_from_official(ckpt, path)
    else:
        raise CheckpointError(
            f"{path}: unknown checkpoint (keys {sorted(ckpt)[:8]}); expected an official pSp/e4e/ReStyle file "
            f"('state_dict', 'opts', 'latent_avg') or an inversion export ('format': {INVERTER_FORMAT!r})"
        )
    inverter.eval().requires_grad_(False)
    return inverter.to(device=device, dtype=dtype) if dtype is not None else inverter.to(device)
