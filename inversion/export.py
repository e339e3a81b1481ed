"""Export one of our trained encoders as an official pSp / e4e / ReStyle checkpoint.

``python -m inversion export --to official CKPT OUT.pt`` writes (atomically) the layout that the official repositories'
training coaches save and their inference / editing code reads::

    {'state_dict': {'encoder.<key>': ..., 'decoder.<rosinality Generator key>': ...},
     'opts': {...},            # every field their loaders and inference scripts read
     'latent_avg': tensor}     # [num_ws, w_dim]; [1, w_dim] for pSp's learn_in_w (W) encoder

Which official class rebuilds the encoder (``opts['encoder_type']``):

=================================  ======================================  ==========================================
our encoder                        official encoder_type                   official model (repository, file)
=================================  ======================================  ==========================================
GradualStyleEncoder                GradualStyleEncoder                     pSp (pixel2style2pixel, models/psp.py)
WEncoder                           BackboneEncoderUsingLastLayerIntoW      pSp with learn_in_w=True
Encoder4Editing                    Encoder4Editing                         e4e (encoder4editing, models/psp.py)
BackboneEncoder                    BackboneEncoder                         ReStyle pSp (restyle-encoder, models/psp.py)
ResNetBackboneEncoder              ResNetBackboneEncoder                   ReStyle pSp
ProgressiveBackboneEncoder         ProgressiveBackboneEncoder              ReStyle e4e (restyle-encoder, models/e4e.py)
ResNetProgressiveBackboneEncoder   ResNetProgressiveBackboneEncoder        ReStyle e4e
=================================  ======================================  ==========================================

The official code builds ``Generator(output_size, 512, 8, channel_multiplier=2)`` and IR-SE50 / ResNet-34 encoders of
fixed widths for 256 px inputs, so by default a model of other shapes is refused with the list of differences;
``allow_nonstandard=True`` (``--allow-nonstandard``) writes it anyway if :func:`inversion.load_inverter` can read it
back (other widths and generator sizes: yes; encoders for other input sizes, like the 32 px demo: no, nothing is
written). The decoder keys are exactly those of rosinality's ``Generator`` (our extra ``w_avg`` buffer is left out;
readers take the average latent from ``latent_avg``), so the official ``load_state_dict(strict=True)`` accepts them.

e4e-style encoders in the middle of their progressive schedule use only the first ``progressive_stage`` deltas, while
the official classes always run all of them (``ProgressiveStage.Inference``): the export zeroes the final linear layer
of the unused delta heads, so both compute the same ``ws``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import (
    INVERTER_FORMAT,
    OFFICIAL_ENCODERS,
    inverter_from_official,
    load_inverter,
    official_geometry,
)
from .encoders import ProgressiveStageMixin
from .encoders.psp import input_hw
from .imageio import atomic_save
from .inverter import Inverter
from .models.loading import sniff_format, torch_load
from .models.state import CheckpointError, import_target, load_state_strict, normalize_latent_avg, state_diff
from .models.stylegan2 import EqualLinear, Generator
from .tasks import RGB, InputSpec

__all__ = [
    "OFFICIAL_FAMILIES",
    "export_official",
    "load_for_export",
    "official_family",
    "official_compatibility",
    "official_encoder_type",
]

ACCEPTED = (
    "our export written by train.py (outputs/train/<name>/export/inverter.pt, inversion.save_inverter), a Lightning "
    "checkpoint of train.py (outputs/train/<name>/checkpoints/*.ckpt, next to that run's export/inverter.pt) or an "
    "official pSp / e4e / ReStyle file"
)

# --------------------------------------------------------------------------------------------------- official opts
# Defaults of the official option parsers (argparse defaults, as ``vars(opts)`` saves them in the coaches' files).

_PSP_TRAIN = dict(  # pixel2style2pixel options/train_options.py
    exp_dir=None, dataset_type="ffhq_encode", encoder_type="GradualStyleEncoder", input_nc=3, label_nc=0,
    output_size=1024, batch_size=4, test_batch_size=2, workers=4, test_workers=2, learning_rate=0.0001,
    optim_name="ranger", train_decoder=False, start_from_latent_avg=False, learn_in_w=False, lpips_lambda=0.8,
    id_lambda=0, l2_lambda=1.0, w_norm_lambda=0, lpips_lambda_crop=0, l2_lambda_crop=0, moco_lambda=0,
    stylegan_weights="pretrained_models/stylegan2-ffhq-config-f.pt", checkpoint_path=None, max_steps=500000,
    image_interval=100, board_interval=50, val_interval=1000, save_interval=None, use_wandb=False,
    resize_factors=None,
)
_PSP_TEST = dict(  # pixel2style2pixel options/test_options.py (scripts/inference.py, style_mixing.py, notebooks)
    data_path="gt_images", couple_outputs=False, resize_outputs=False, test_batch_size=2, test_workers=2,
    n_images=None, n_outputs_to_generate=5, mix_alpha=None, latent_mask=None, resize_factors=None,
)
_E4E_TRAIN = dict(  # encoder4editing options/train_options.py
    exp_dir=None, dataset_type="ffhq_encode", encoder_type="Encoder4Editing", batch_size=4, test_batch_size=2,
    workers=4, test_workers=2, learning_rate=0.0001, optim_name="ranger", train_decoder=False,
    start_from_latent_avg=False, lpips_type="alex", lpips_lambda=0.8, id_lambda=0.1, l2_lambda=1.0,
    stylegan_weights="pretrained_models/stylegan2-ffhq-config-f.pt", stylegan_size=1024, checkpoint_path=None,
    max_steps=500000, image_interval=100, board_interval=50, val_interval=1000, save_interval=None,
    w_discriminator_lambda=0, w_discriminator_lr=2e-5, r1=10, d_reg_every=16, use_w_pool=False, w_pool_size=50,
    delta_norm=2, delta_norm_lambda=2e-4, progressive_steps=None, progressive_start=None, progressive_step_every=2000,
    save_training_data=False, sub_exp_dir=None, keep_optimizer=False, resume_training_from_ckpt=None,
    update_param_list=None,
)
_RESTYLE_TRAIN = dict(  # restyle-encoder options/train_options.py
    exp_dir=None, dataset_type="ffhq_encode", encoder_type="BackboneEncoder", input_nc=6, output_size=1024,
    batch_size=4, test_batch_size=2, workers=4, test_workers=2, learning_rate=0.0001, optim_name="ranger",
    train_decoder=False, start_from_latent_avg=False, lpips_lambda=0, id_lambda=0, l2_lambda=0, w_norm_lambda=0,
    moco_lambda=0, stylegan_weights=None, checkpoint_path=None, max_steps=500000, image_interval=100,
    board_interval=50, val_interval=1000, save_interval=None, n_iters_per_batch=5,
)
_RESTYLE_E4E_TRAIN = dict(  # restyle-encoder options/e4e_train_options.py (on top of train_options.py)
    w_discriminator_lambda=0, w_discriminator_lr=2e-5, r1=10, d_reg_every=16, use_w_pool=False, w_pool_size=50,
    delta_norm=2, delta_norm_lambda=2e-4, progressive_steps=None, progressive_start=None, progressive_step_every=2000,
    save_training_data=False, sub_exp_dir=None, resume_training_from_ckpt=None, update_param_list=None,
)
_RESTYLE_TEST = dict(  # restyle-encoder options/test_options.py (inference_iterative.py, editing, notebooks)
    data_path="gt_images", resize_outputs=False, test_batch_size=2, test_workers=2, n_images=None,
    n_iters_per_batch=5, model_1_checkpoint_path=None, model_2_checkpoint_path=None,
    edit_directions="age,smile,pose", factor_ranges="5,5,5",
)
_OFFICIAL_DEVICE = "cuda:0"  # every official coach sets opts.device = 'cuda:0' before saving


@dataclass(frozen=True)
class OfficialFamily:
    """An official model class that rebuilds some encoder types."""

    name: str  # 'pSp', 'e4e', 'ReStyle-pSp', 'ReStyle-e4e'
    repository: str  # GitHub owner/name
    model: str  # the class that reads the file
    in_channels: int  # encoder input channels (opts.input_nc)
    datasets: tuple[str, ...]  # keys of that repository's configs/data_configs.DATASETS (opts.dataset_type)
    defaults: tuple[tuple[str, Any], ...]  # official train + test option defaults


OFFICIAL_FAMILIES: dict[str, OfficialFamily] = {
    "pSp": OfficialFamily(
        "pSp", "eladrich/pixel2style2pixel", "models/psp.py: pSp", 3,
        ("ffhq_encode", "ffhq_frontalize", "celebs_sketch_to_face", "celebs_seg_to_face", "celebs_super_resolution"),
        tuple({**_PSP_TRAIN, **_PSP_TEST}.items()),
    ),
    "e4e": OfficialFamily(
        "e4e", "omertov/encoder4editing", "models/psp.py: pSp (utils/model_utils.py: setup_model)", 3,
        ("ffhq_encode", "cars_encode", "horse_encode", "church_encode", "cats_encode"),
        tuple(_E4E_TRAIN.items()),
    ),
    "ReStyle-pSp": OfficialFamily(
        "ReStyle-pSp", "yuval-alaluf/restyle-encoder", "models/psp.py: pSp", 6,
        ("ffhq_encode", "cars_encode", "church_encode", "horse_encode", "afhq_wild_encode", "toonify"),
        tuple({**_RESTYLE_TRAIN, **_RESTYLE_TEST}.items()),
    ),
    "ReStyle-e4e": OfficialFamily(
        "ReStyle-e4e", "yuval-alaluf/restyle-encoder", "models/e4e.py: e4e", 6,
        ("ffhq_encode", "cars_encode", "church_encode", "horse_encode", "afhq_wild_encode", "toonify"),
        tuple({**_RESTYLE_TRAIN, **_RESTYLE_E4E_TRAIN, **_RESTYLE_TEST, "encoder_type": "ProgressiveBackboneEncoder"}
              .items()),
    ),
}

_FAMILY_OF = {  # official encoder_type -> family
    "GradualStyleEncoder": "pSp",
    "BackboneEncoderUsingLastLayerIntoW": "pSp",
    "Encoder4Editing": "e4e",
    "BackboneEncoder": "ReStyle-pSp",
    "ResNetBackboneEncoder": "ReStyle-pSp",
    "ProgressiveBackboneEncoder": "ReStyle-e4e",
    "ResNetProgressiveBackboneEncoder": "ReStyle-e4e",
}
assert set(_FAMILY_OF) == set(OFFICIAL_ENCODERS)


def official_family(encoder: nn.Module) -> OfficialFamily:
    """The official model family (pSp, e4e, ReStyle pSp / e4e) that rebuilds one of our encoders."""
    return OFFICIAL_FAMILIES[_FAMILY_OF[official_encoder_type(encoder)]]


def official_encoder_type(encoder: nn.Module) -> str:
    """The official ``encoder_type`` of one of our encoders (its exact class); ``ValueError`` if there is none."""
    for enc_type, (target, _) in OFFICIAL_ENCODERS.items():
        if type(encoder) is import_target(target):
            return enc_type
    ours = sorted(t.rpartition(".")[2] for t, _ in OFFICIAL_ENCODERS.values())
    raise ValueError(f"the official pSp / e4e / ReStyle code has no class for {type(encoder).__name__}; "
                     f"exportable encoders: {ours}")


# --------------------------------------------------------------------------------------------------- compatibility
def _diff(ours: nn.Module, ref: nn.Module, what: str, skip: Sequence[str] = ()) -> list[str]:
    """Keys and shapes of ``ours`` against the official-shaped ``ref`` (meta tensors: no weights are read)."""
    missing, extra, mismatched = state_diff({k: v for k, v in ours.state_dict().items() if k not in skip},
                                            {k: v for k, v in ref.state_dict().items() if k not in skip})
    bad = [f"{k} {got} vs {want}" for k, got, want in mismatched]
    out = []
    if missing:
        out.append(f"{what}: {len(missing)} official keys missing, e.g. {missing[:3]}")
    if extra:
        out.append(f"{what}: {len(extra)} keys the official class does not have, e.g. {extra[:3]}")
    if bad:
        out.append(f"{what}: {len(bad)} shapes differ from the official ones (ours vs official), e.g. {bad[:3]}")
    return out


def _mode_problem(enc_type: str) -> str:
    family = _FAMILY_OF[enc_type]
    if OFFICIAL_ENCODERS[enc_type][1]:
        return (f"{enc_type} is {family}'s residual encoder, but this inverter is single-pass (residual=False); "
                "the official code runs it iteratively")
    return (f"{enc_type} is {family}'s single-pass encoder, but this inverter is residual (ReStyle); the official "
            f"{family} code has no iterative mode")


def _official_input(inverter: Inverter, family: OfficialFamily) -> tuple[int, int]:
    """``(input_nc, label_nc)`` of the file: pSp's image-to-image inputs (sketch: 1 / 1, labels: N / N) from the
    inverter's :class:`~inversion.tasks.InputSpec`; the family's RGB default otherwise."""
    spec = inverter.input_spec
    if spec.mode == "rgb" or family.name != "pSp":
        return family.in_channels, 0
    return spec.channels, 1 if spec.mode == "gray" else spec.channels


def official_compatibility(inverter: Inverter) -> tuple[list[str], list[str]]:
    """``(problems, differences)`` of ``inverter`` against the official classes.

    ``problems``: the official code cannot rebuild or strictly load the model (other widths, depths, input size,
    a generator that is not ``Generator(size, 512, 8, channel_multiplier=2)``, an inverter mode that does not match
    the encoder). ``differences``: the file loads but the official code computes something slightly different.
    Works on meta-device models (no weights are read).
    """
    enc_type = official_encoder_type(inverter.encoder)
    family = OFFICIAL_FAMILIES[_FAMILY_OF[enc_type]]
    residual = OFFICIAL_ENCODERS[enc_type][1]
    G = inverter.generator
    problems: list[str] = []
    differences: list[str] = []
    if inverter.residual != residual:
        problems.append(_mode_problem(enc_type))
    # generator: official Generator(output_size, 512, 8, channel_multiplier=2)
    res = G.img_resolution
    if (G.z_dim, G.w_dim) != (512, 512):
        problems.append(f"generator z_dim={G.z_dim}, w_dim={G.w_dim} (official: 512, 512)")
    if getattr(G, "c_dim", 0):
        problems.append(f"generator is conditional (c_dim={G.c_dim}): rosinality's Generator has no label input")
    if G.n_mlp != 8:
        problems.append(f"generator has {G.n_mlp} mapping layers (official: 8)")
    with torch.device("meta"):
        ref_G = Generator(img_resolution=res)
    if dict(G.channels) != dict(ref_G.channels):
        problems.append(f"generator channels {dict(G.channels)} (official config-f: {dict(ref_G.channels)})")
    if not problems:
        problems += _diff(G, ref_G, "generator", skip=["w_avg"])
    if G.conv_clamp is not None:
        differences.append(f"generator conv_clamp={G.conv_clamp}: rosinality's Generator has no activation clamp")
    lr_muls = {m.lr_mul for m in G.style.modules() if isinstance(m, EqualLinear)}
    if lr_muls != {0.01}:
        differences.append(f"generator mapping lr multiplier {sorted(lr_muls)} (official lr_mlp=0.01)")
    # encoder: the official classes have fixed widths (IR-SE50 / ResNet-34) for 256 px inputs
    enc = inverter.encoder
    input_nc, label_nc = _official_input(inverter, family)
    read_as = RGB if family.name != "pSp" else InputSpec.from_official_opts({"input_nc": input_nc,
                                                                             "label_nc": label_nc})
    if inverter.input_spec.mode != "rgb" and family.name != "pSp":
        problems.append(f"{inverter.input_spec.mode} inputs: only pSp has input_nc / label_nc")
    elif inverter.input_spec != read_as:
        differences.append(f"inputs {inverter.input_spec}: {family.name} reads them as {read_as}")
    if getattr(enc, "in_channels", input_nc) != input_nc:
        problems.append(f"encoder has {enc.in_channels} input channels ({family.name}: input_nc={input_nc})")
    if input_hw(getattr(enc, "input_size", inverter.encoder_size)) != inverter.encoder_hw:
        problems.append(f"encoder input size {enc.input_size} differs from the inverter's {inverter.encoder_size}")
    geometry = _geometry(inverter)
    cars = official_geometry({"dataset_type": "cars_encode"}, G.img_resolution)
    if geometry == cars and family.name == "pSp":
        problems.append("the cars geometry (192x256 inputs, content box): pSp has no cars_encode")
    elif geometry not in (official_geometry({}, G.img_resolution), cars):
        problems.append(f"encoder input size {inverter.encoder_size}, content box {geometry.get('content_box')} "
                        f"(the official encoders and face_pool: 256; e4e / ReStyle cars_encode: {cars})")
    with torch.device("meta"):
        ref_enc = type(enc)(num_ws=G.num_ws, w_dim=512, in_channels=input_nc, input_size=256)
    problems += _diff(enc, ref_enc, f"encoder ({type(enc).__name__})")
    if residual and inverter.resize_mode != "adaptive_avg":
        differences.append(f"resize_mode={inverter.resize_mode!r}: ReStyle feeds back its reconstructions through "
                           "AdaptiveAvgPool2d (our 'adaptive_avg')")
    return problems, differences


# --------------------------------------------------------------------------------------------------- export
def _geometry(inverter: Inverter) -> dict[str, Any]:
    """The inverter's input size and content box in :func:`~inversion.checkpoints.official_geometry`'s form."""
    box = None if inverter.content_box is None else list(inverter.content_box)
    return {"encoder_size": inverter.encoder_size, **({} if box is None else {"content_box": box})}


def _cpu(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().to("cpu")
    return (t.float() if t.is_floating_point() else t).contiguous().clone()


def _official_latent_avg(inverter: Inverter, learn_in_w: bool) -> torch.Tensor:
    """The file's ``latent_avg``: [num_ws, w_dim]; [1, w_dim] for learn_in_w (read back by normalize_latent_avg)."""
    G = inverter.generator
    avg = normalize_latent_avg(inverter.latent_avg, num_ws=G.num_ws, w_dim=G.w_dim, source="Inverter").cpu()
    if not learn_in_w:
        return avg
    if inverter.start_from_latent_avg and not torch.equal(avg, avg[:1].expand_as(avg)):
        raise ValueError("pSp's learn_in_w model adds one latent_avg row to every layer, but this inverter's "
                         "latent_avg rows differ")
    return avg[:1].clone()  # pSp keeps [1, w_dim] for learn_in_w (__load_latent_avg(ckpt, repeat=1))


def _encoder_state(inverter: Inverter, enc_type: str) -> dict[str, torch.Tensor]:
    enc = inverter.encoder
    state = {k: _cpu(v) for k, v in enc.state_dict().items()}
    if isinstance(enc, ProgressiveStageMixin) and enc.num_active_deltas < enc.num_ws - 1:
        unused = list(range(enc.num_active_deltas + 1, enc.num_ws))
        for i in unused:
            for name in ("weight", "bias"):
                state[f"styles.{i}.linear.{name}"].zero_()
        warnings.warn(
            f"{type(enc).__name__} is at progressive stage {enc.progressive_stage} of {enc.num_ws}; the official "
            f"{enc_type} always adds every delta, so the final linear layers of the unused delta heads {unused} are "
            "written as zeros (same ws as this model)", stacklevel=3)
    return state


def _official_opts(inverter: Inverter, enc_type: str, path: Path, dataset_type: str, stylegan_weights: str | None,
                   exp_dir: str | None, source: str | None) -> dict[str, Any]:
    family = OFFICIAL_FAMILIES[_FAMILY_OF[enc_type]]
    G = inverter.generator
    opts = dict(family.defaults)
    opts.update(
        exp_dir=str(exp_dir) if exp_dir is not None else str(path.parent),
        dataset_type=dataset_type,
        encoder_type=enc_type,
        input_nc=_official_input(inverter, family)[0],
        label_nc=_official_input(inverter, family)[1],
        output_size=G.img_resolution,  # pSp, ReStyle (and our loader)
        start_from_latent_avg=bool(inverter.start_from_latent_avg or inverter.residual),
        checkpoint_path=str(path),
        device=_OFFICIAL_DEVICE,
    )
    if stylegan_weights is not None:
        opts["stylegan_weights"] = str(stylegan_weights)
    if family.name == "pSp":
        opts["learn_in_w"] = enc_type == "BackboneEncoderUsingLastLayerIntoW"
        opts["n_styles"] = G.num_ws  # set by pSp.__init__, so in every official pSp file
    if family.name == "e4e":
        opts["stylegan_size"] = G.img_resolution
    if family.name.startswith("ReStyle"):
        opts["n_iters_per_batch"] = int(inverter.num_iters)
    opts["exported_by"] = "inversion.export"
    if source is not None:
        opts["exported_from"] = str(source)
    return opts


def export_official(
    inverter: Inverter,  # One of our inverters (encoder + generator + latent_avg), e.g. from load_inverter.
    path: str | os.PathLike,  # Output file (.pt), written atomically.
    *,
    dataset_type: str = "ffhq_encode",  # opts.dataset_type: a key of the official repository's data_configs.
    stylegan_weights: str | os.PathLike | None = None,  # opts.stylegan_weights (the generator file), informative.
    exp_dir: str | os.PathLike | None = None,  # opts.exp_dir; default: the output folder.
    source: str | os.PathLike | None = None,  # Recorded as opts.exported_from.
    allow_nonstandard: bool = False,  # Write even if the official classes cannot rebuild these shapes.
) -> Path:
    """Write ``inverter`` as an official pSp / e4e / ReStyle checkpoint; returns the absolute output path.

    Raises ``ValueError`` for an encoder the official code has no class for, an inverter mode that does not match
    its encoder, an unknown ``dataset_type``, or (unless ``allow_nonstandard``) shapes the official classes cannot
    rebuild. Behavioural differences that still load (generator activation clamp, another feedback resize) warn.
    """
    path = Path(path).expanduser().resolve()
    enc_type = official_encoder_type(inverter.encoder)
    family = OFFICIAL_FAMILIES[_FAMILY_OF[enc_type]]
    if dataset_type not in family.datasets:
        raise ValueError(f"dataset_type {dataset_type!r} is not one of {family.name}'s data_configs "
                         f"{list(family.datasets)} (its inference scripts look it up)")
    if inverter.residual != OFFICIAL_ENCODERS[enc_type][1]:
        raise ValueError(f"{path.name}: {_mode_problem(enc_type)}")
    want = official_geometry({"dataset_type": dataset_type}, inverter.generator.img_resolution)
    have = _geometry(inverter)
    if have != want and have in (official_geometry({}, inverter.generator.img_resolution),
                                 official_geometry({"dataset_type": "cars_encode"},
                                                   inverter.generator.img_resolution)):
        raise ValueError(f"{path.name}: dataset_type {dataset_type!r} reads {want} in the official code, but this "
                         f"inverter has {have} (cars models: --dataset-type cars_encode)")
    problems, differences = official_compatibility(inverter)
    if problems and not allow_nonstandard:
        raise ValueError(
            f"{path.name}: the official {family.name} code ({family.repository}, {family.model}) cannot rebuild "
            "this model: " + "; ".join(problems) + ". Pass allow_nonstandard=True (--allow-nonstandard) to write it "
            "anyway; inversion.load_inverter reads such a file, the official classes do not."
        )
    for d in differences:
        warnings.warn(f"{path.name}: the official {family.name} code will not compute exactly the same: {d}",
                      stacklevel=2)
    learn_in_w = enc_type == "BackboneEncoderUsingLastLayerIntoW"
    state = {f"encoder.{k}": v for k, v in _encoder_state(inverter, enc_type).items()}
    state.update({f"decoder.{k}": _cpu(v) for k, v in inverter.generator.state_dict().items() if k != "w_avg"})
    ckpt = {
        "state_dict": state,
        "opts": _official_opts(inverter, enc_type, path, dataset_type,
                               None if stylegan_weights is None else str(stylegan_weights), exp_dir,
                               None if source is None else str(source)),
        "latent_avg": _official_latent_avg(inverter, learn_in_w),
    }
    if problems:  # a non-standard file must at least load with our own reader of the official layout
        try:
            inverter_from_official(ckpt, path)
        except CheckpointError as err:
            shown = next((p for p in problems if "input size" in p), problems[0])
            raise ValueError(
                f"{path.name}: not written: the official classes cannot rebuild this model ({shown}; ...) and "
                f"inversion.load_inverter could not read it back either (it reads official-layout encoders as "
                f"256 px IR-SE / ResNet-34 encoders): {err}") from err
    return atomic_save(ckpt, path)


# --------------------------------------------------------------------------------------------------- inputs
def _is_lightning(ckpt: dict) -> bool:
    sd = ckpt.get("state_dict")
    return isinstance(sd, dict) and any(str(k).startswith("inverter.encoder.") for k in sd)


def load_for_export(
    path: str | os.PathLike,  # Our inverter.pt, a train.py Lightning .ckpt, or an official file.
    *,
    generator_path: str | os.PathLike | None = None,  # Where the generator file is now (if it moved).
    settings: str | os.PathLike | None = None,  # Lightning .ckpt: our export with its settings (default: sibling).
) -> tuple[Inverter, dict[str, Any]]:
    """The inverter to export and what is known about it (``stylegan_weights``, ``exp_dir``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to export not found: {path}. Accepted: {ACCEPTED}")
    try:
        fmt = sniff_format(path)
    except CheckpointError:
        fmt = "unknown"
    if fmt != "torch":
        raise CheckpointError(f"{path}: not a torch checkpoint (torch.save file). Accepted: {ACCEPTED}")
    ckpt = torch_load(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(ckpt).__name__}. Accepted: {ACCEPTED}")
    info: dict[str, Any] = {}
    if _is_lightning(ckpt):
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        settings = Path(settings) if settings is not None else run_dir / "export" / "inverter.pt"
        if not settings.is_file():
            raise FileNotFoundError(
                f"{path} is a Lightning checkpoint: it holds the encoder weights but not the encoder settings or "
                f"the generator; those come from the run's export {settings}, which does not exist (pass --settings "
                "with that run's export/inverter.pt)")
        inverter = load_inverter(settings, generator_path=generator_path)
        sd = ckpt["state_dict"]
        enc = {k[len("inverter.encoder."):]: v for k, v in sd.items() if k.startswith("inverter.encoder.")}
        load_state_strict(inverter.encoder, enc, f"{path} (inverter.encoder.*)", what="encoder weights")
        if "inverter.latent_avg" in sd:
            G = inverter.generator
            avg = normalize_latent_avg(sd["inverter.latent_avg"], num_ws=G.num_ws, w_dim=G.w_dim,
                                       source=f"{path} (inverter.latent_avg, for the model of {settings})")
            with torch.no_grad():
                inverter.latent_avg.copy_(avg)
            inverter._avg_image = None  # the cached image of the old latent_avg
        stage = (ckpt.get("e4e") or {}).get("progressive_stage")
        if stage is not None and isinstance(inverter.encoder, ProgressiveStageMixin):
            inverter.encoder.progressive_stage = int(stage)
        meta = torch_load(settings)
        info["exp_dir"] = str(run_dir)
    elif ckpt.get("format") == INVERTER_FORMAT or ("opts" in ckpt and "state_dict" in ckpt):
        inverter = load_inverter(path, generator_path=generator_path)
        meta = ckpt
        if path.parent.name == "export":
            info["exp_dir"] = str(path.parent.parent)
    else:
        raise CheckpointError(f"{path}: unknown checkpoint (keys {sorted(map(str, ckpt))[:8]}). Accepted: {ACCEPTED}")
    gen = meta.get("generator") if meta.get("format") == INVERTER_FORMAT else None
    if generator_path is not None:
        info["stylegan_weights"] = str(generator_path)
    elif isinstance(gen, dict) and gen.get("path"):
        info["stylegan_weights"] = str(gen["path"])
    elif isinstance(meta.get("opts"), dict) and meta["opts"].get("stylegan_weights"):
        info["stylegan_weights"] = str(meta["opts"]["stylegan_weights"])
    return inverter, info


if __name__ == "__main__":  # deprecated spelling of: python -m inversion export
    from inversion.cli import deprecated_alias

    raise SystemExit(deprecated_alias("export", "inversion.export"))
