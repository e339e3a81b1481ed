"""Invert your own photos: ``python -m inversion invert --checkpoint CKPT --input DIR_OR_FILES --output DIR``.

For every readable image (optionally FFHQ-aligned first, with ``--align``): the inverter's latents (and, with
``--refine``, per-image refined latents seeded by the encoder) and reconstructions. Written to ``--output``:

* ``latents/<name>.pt`` (``{"ws": [num_ws, w_dim], "noise": [...] | None, "source", "checkpoint", "refined"}``)
  and ``latents/<name>.npy`` (``ws`` as float32), after every batch;
* ``latents.pt`` (``{"names", "sources", "ws": [N, num_ws, w_dim]}``) and ``latents.npy`` for all images;
* ``reconstructions/<name>.png`` at the generator's resolution (``refined/<name>.png`` with ``--refine``);
* ``tuned/<name>.pt`` with ``--refine pti`` (pivotal tuning): the compact result, pivot + per-image generator
  deltas (:func:`inversion.refine.load_tuned` renders it; ``inversion edit`` edits it); ``latents/`` then holds the
  pivot;
* ``aligned/<name>.png`` with ``--align``: what the encoder saw;
* with ``--align --sg3-unaligned`` (StyleGAN3 generators): ``unaligned/<name>.png``, the final latents rendered
  with the input transform that maps the aligned crop back onto an unaligned square of the photo, and
  ``unaligned_input/<name>.png``, that square of the photo at the same size (:mod:`inversion.unaligned`); the
  transform (``theta``, ``translation``, ``matrix`` M, ``inverse`` M⁻¹ = the ``synthesis.input.transform``
  value, ``box``) goes into the latent record (``"unaligned"``) and the summary entry;
* with ``--latent-mask`` (multi-modal synthesis by style mixing, :mod:`inversion.style_mixing`):
  ``multimodal/<name>/<k>.png`` for ``k < --n-outputs`` (the final latents with the masked layers resampled from
  seeded random z) and ``multimodal/<name>/latents.pt`` (``{"ws": [K, num_ws, w_dim], "inject_ws", "z",
  "latent_mask", "mix_alpha", "mix_seed", "source"}``);
* ``grid.png``: input | reconstruction (| refined) (| multi-modal outputs), one row per image (the first
  ``--grid-images``);
* ``summary.json``: settings (``input_mode``: what the encoder reads), processed images, every skipped file with
  its reason, timings (rewritten after every batch; ``"finished": true`` once the run is complete).

Unreadable or non-image files and, with ``--align``, images without a face are reported (stderr and
``summary.json``) and skipped; everything else is still written. Exit status: 0 when at least one image was
inverted, 1 when none was, 2 for a usage error (missing checkpoint, unknown refine config, bad latent mask, ...).

Checkpoints of pSp's image-to-image tasks read their inputs through ``inverter.input_spec``
(:mod:`inversion.tasks`): sketches as 1-channel grayscale, segmentation maps as class-index images made one-hot.
Such inputs are center-cropped and resized like photos (label maps: nearest); ``--align`` and ``--refine``
(which compare with an RGB photo) are refused for them.

The same as a function: :func:`invert_images`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .imageio import RESIZE_MODES, atomic_save, atomic_write_json, from_pil, read_rgb, resize_images, stack_rows, to_pil
from .inverter import Inverter
from .reconstruct import reconstruct
from .refine import Tuner, TuneResult, save_tuned
from .style_mixing import multimodal, parse_latent_mask

__all__ = ["IMAGE_SUFFIXES", "InvertSummary", "collect_inputs", "invert_images", "load_refine_config"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class InvertSummary:
    """What :func:`invert_images` did: one entry per inverted image, one per skipped file (with the reason)."""

    processed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "num_processed": len(self.processed), "num_skipped": len(self.skipped),
                "processed": self.processed, "skipped": self.skipped, "seconds": self.seconds}


def collect_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files to invert: named files as given (whatever their suffix), folders' image files (by suffix, sorted,
    not recursive). Returns the files and the missing paths as skipped entries."""
    files: list[Path] = []
    missing: list[dict[str, str]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            missing.append({"file": str(path), "reason": "no such file or folder"})
    seen: set[Path] = set()
    unique = [p for p in files if not (p.resolve() in seen or seen.add(p.resolve()))]
    return unique, missing


def _unique_names(files: Sequence[Path]) -> list[str]:
    """Output names from file stems; repeated stems get ``_1``, ``_2``, ... in input order."""
    taken: set[str] = set()
    names = []
    for f in files:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in f.stem) or "image"
        name, k = stem, 0
        while name in taken:
            k += 1
            name = f"{stem}_{k}"
        taken.add(name)
        names.append(name)
    return names


def _center_square(img: Image.Image) -> Image.Image:
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return img.crop((left, top, left + side, top + side))


def load_refine_config(name_or_path: str, overrides: Sequence[str] = ()) -> Any:
    """``conf/refine/<name>.yaml`` (``none``, ``image2stylegan``, ``projector``, ``noise``, ``pti``) or a YAML file,
    composed with ``conf/invert.yaml`` (so ``${paths.*}`` weight files resolve) and ``key=value`` overrides:
    ``num_steps=200`` sets ``refine.num_steps``; ``paths.vgg16=/w/vgg16.pth`` sets a weights file;
    ``refine@refine.pivot=projector`` picks a nested config."""
    from omegaconf import OmegaConf

    from .config import compose, options

    overrides = [o if o.startswith(("paths.", "refine.", "refine@")) else f"refine.{o}" for o in overrides]
    path = Path(name_or_path)
    if path.suffix:
        if not path.is_file():
            raise FileNotFoundError(f"refine config file {path} not found")
        cfg = compose("invert", ["refine=none"])
        cfg.refine = OmegaConf.load(path)
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides)).refine
    if name_or_path not in options("refine"):
        raise FileNotFoundError(f"refine config {name_or_path!r} not found; choose one of {options('refine')} "
                                "or pass a YAML file")
    return compose("invert", [f"refine={name_or_path}", *overrides]).refine


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def invert_images(
    inverter: Inverter,  # A ready inverter (load_inverter), on its device and dtype.
    inputs: Sequence[str | os.PathLike],  # Image files and/or folders of images.
    output: str | os.PathLike,  # Output folder (created).
    *,
    aligner: Any | None = None,  # inversion.align.FaceAligner, or None: center square crop instead.
    unaligned: bool = False,  # Also render in the photo's unaligned framing (needs aligner and a StyleGAN3).
    refiner: Callable[..., Any] | None = None,  # inversion.refine.build_refiner(cfg), or None.
    refine_size: int = 256,  # Refinement compares images at this size (the aligned input resized to it).
    batch_size: int = 8,
    num_iters: int | None = None,  # ReStyle steps (None: the checkpoint's).
    input_resize_mode: str = "bilinear_antialias",  # How inputs are resized to the encoder size.
    noise_mode: str = "const",
    grid_images: int = 16,  # Rows in grid.png.
    thumb_size: int = 256,  # Tile size in grid.png.
    checkpoint: str = "",  # Recorded in the latent files and summary.json.
    latent_mask: str | Sequence[int] | None = None,  # Multi-modal outputs: W+ layers to resample ("8,9,10", "8:18").
    mix_alpha: float | None = None,  # None: replace the masked layers; a float: blend (pSp's --mix_alpha).
    n_outputs: int = 5,  # Multi-modal outputs per image.
    mix_seed: int = 0,  # Seeds the random z, drawn image by image in input order.
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> InvertSummary:
    """Invert (and optionally align / refine) every readable image of ``inputs``; see the module docstring."""
    if input_resize_mode not in RESIZE_MODES:
        raise ValueError(f"input_resize_mode={input_resize_mode!r}; choose one of {list(RESIZE_MODES)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    spec = inverter.input_spec
    if spec.mode != "rgb" and (aligner is not None or refiner is not None):
        raise ValueError(f"this checkpoint reads {spec.mode} inputs ({spec.channels} channel(s)): face alignment and "
                         "refinement need RGB photos")
    layers = None if latent_mask is None else parse_latent_mask(latent_mask, inverter.generator.num_ws)
    if layers is not None and n_outputs < 1:
        raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
    if unaligned:
        from .unaligned import has_input_transform, render_unaligned, unaligned_transform

        if aligner is None:
            raise ValueError("unaligned=True (--sg3-unaligned) needs an aligner (--align): the unaligned framing "
                             "comes from the alignment's geometry")
        if not has_input_transform(inverter.generator):
            raise ValueError(f"unaligned=True (--sg3-unaligned) needs a StyleGAN3 generator (an input transform); "
                             f"this checkpoint's is a {type(inverter.generator).__name__}")
    out = Path(output)
    dirs = {k: out / k for k in ("latents", "reconstructions", *(("refined",) if refiner else ()),
                                   *(("tuned",) if isinstance(refiner, Tuner) else ()),
                                   *(("aligned",) if aligner else ()),
                                   *(("unaligned", "unaligned_input") if unaligned else ()),
                                   *(("multimodal",) if layers is not None else ()))}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    files, skipped = collect_inputs(inputs)
    for s in skipped:
        log(f"skipped {s['file']}: {s['reason']}")
    names = _unique_names(files)
    device = inverter.latent_avg.device
    dtype = next(inverter.encoder.parameters()).dtype
    G = inverter.generator
    summary = InvertSummary(skipped=skipped, seconds={"load_align": 0.0, "invert": 0.0, "refine": 0.0})
    summary.settings = {"checkpoint": checkpoint, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
                        "align": aligner is not None, "sg3_unaligned": bool(unaligned),
                        "refine": refiner is not None, "refine_size": refine_size,
                        "num_iters": num_iters or inverter.num_iters, "encoder_size": inverter.encoder_size,
                        "input_resize_mode": input_resize_mode, "img_resolution": G.img_resolution,
                        "autocast": None if inverter.autocast is None else str(inverter.autocast).replace("torch.", ""),
                        "channels_last": inverter.channels_last,
                        "num_ws": G.num_ws, "w_dim": G.w_dim, "noise_mode": noise_mode,
                        "input_mode": spec.mode, "input_channels": spec.channels}
    if layers is not None:
        summary.settings.update(latent_mask=layers, mix_alpha=mix_alpha, n_outputs=n_outputs, mix_seed=mix_seed)
    mix_rng = torch.Generator().manual_seed(int(mix_seed))
    all_ws: list[torch.Tensor] = []
    grid_rows: list[list[Image.Image]] = []

    from tqdm.auto import tqdm

    bar = tqdm(total=len(files), unit="img", desc="invert", disable=not progress, dynamic_ncols=True)
    for batch in _batches(list(zip(files, names)), batch_size):
        t0 = time.perf_counter()
        ready: list[tuple[Path, str, Any]] = []  # (file, name, RGB PIL image | spec.read tensor)
        frames: list[tuple[Any, Image.Image]] = []  # with unaligned: (UnalignedTransform, unaligned photo crop)
        for path, name in batch:
            try:
                if spec.mode != "rgb":
                    ready.append((path, name, spec.read(path)))
                    continue
                img = read_rgb(path)
                if aligner is not None:
                    photo, aligned = img, aligner.align(img, name=str(path))
                    img = aligned.image
                    if unaligned:
                        tf = unaligned_transform(aligned, output_size=G.img_resolution)
                        frames.append((tf, tf.crop(photo)))
                elif img.width != img.height:
                    img = _center_square(img)
                ready.append((path, name, img))
            except (ValueError, OSError) as err:  # unreadable or vanished file, NoFaceError (a ValueError)
                reason = str(err).replace(f"{path}: ", "")
                summary.skipped.append({"file": str(path), "reason": reason})
                log(f"skipped {path}: {reason}")
        summary.seconds["load_align"] += time.perf_counter() - t0
        bar.update(len(batch) - len(ready))
        if not ready:
            continue
        full = [from_pil(img) if spec.mode == "rgb" else img for _, _, img in ready]
        x = torch.cat([spec.prepare(t[None], inverter.encoder_hw, input_resize_mode) for t in full])
        if spec.mode != "rgb":  # what the grid shows as the input
            ready = [(path, name, to_pil(tile)) for (path, name, _), tile in zip(ready, spec.display(x))]
        target = None
        if refiner is not None:
            target = torch.stack([resize_images(t[None], refine_size, "bilinear_antialias")[0] for t in full])
        rec = reconstruct(inverter, x, target=target, refiner=refiner, num_iters=num_iters, noise_mode=noise_mode)
        summary.seconds["invert"] += rec.invert_seconds
        summary.seconds["refine"] += sum(rec.refine_seconds.values())
        ws, images = rec.encoder.ws.float(), rec.encoder.images.float()
        refined_ws, refined_images, noise, res = None, None, None, None
        if rec.refined:
            res = rec.refined["encoder"]
            refined_ws, refined_images, noise = res.ws.float(), res.images.float(), res.noise
        final_ws = refined_ws if refined_ws is not None else ws
        tuned = isinstance(res, TuneResult)
        gen_dtype = next(G.parameters()).dtype
        mixed = None
        if layers is not None:
            mixed = multimodal(inverter, x, layers, mix_alpha=mix_alpha, n_outputs=n_outputs, rng=mix_rng,
                               base_ws=final_ws.to(device=device, dtype=gen_dtype), noise_mode=noise_mode)
        unaligned_images = None
        if unaligned:
            with torch.no_grad():
                unaligned_images = render_unaligned(G, final_ws.to(device=device, dtype=gen_dtype),
                                                    np.stack([tf.inverse for tf, _ in frames]),
                                                    noise_mode=noise_mode).float()
        for j, (path, name, img) in enumerate(ready):
            record = {"ws": final_ws[j].cpu(), "noise": None if noise is None else [n[j].cpu() for n in noise],
                      "encoder_ws": ws[j].cpu(), "source": str(path), "checkpoint": checkpoint,
                      "refined": refined_ws is not None, "tuned": f"tuned/{name}.pt" if tuned else None}
            entry: dict[str, Any] = {"name": name, "source": str(path)}
            if unaligned_images is not None:
                tf, photo_crop = frames[j]
                record["unaligned"] = {**tf.as_dict(), "matrix": torch.from_numpy(tf.matrix),
                                       "inverse": torch.from_numpy(tf.inverse)}
                entry["unaligned"] = tf.as_dict()
                to_pil(unaligned_images[j]).save(dirs["unaligned"] / f"{name}.png")
                photo_crop.save(dirs["unaligned_input"] / f"{name}.png")
            atomic_save(record, dirs["latents"] / f"{name}.pt")
            if tuned:
                save_tuned(res, dirs["tuned"] / f"{name}.pt", G, index=j,
                           meta={"source": str(path), "checkpoint": checkpoint})
                entry["tuning"] = res.per_image()[j]
            np.save(dirs["latents"] / f"{name}.npy", final_ws[j].cpu().numpy().astype(np.float32))
            row = [img, to_pil(images[j])]
            row[1].save(dirs["reconstructions"] / f"{name}.png")
            if refined_images is not None:
                row.append(to_pil(refined_images[j]))
                row[2].save(dirs["refined"] / f"{name}.png")
            if aligner is not None:
                img.save(dirs["aligned"] / f"{name}.png")
            if mixed is not None:
                row += _save_multimodal(mixed, j, dirs["multimodal"] / name, path, mix_seed, entry)
            if len(grid_rows) < grid_images:
                grid_rows.append([tile.resize((thumb_size, thumb_size), Image.LANCZOS) for tile in row])
            all_ws.append(final_ws[j].cpu())
            summary.processed.append(entry)
        bar.update(len(ready))
        _write_summary(out, summary, finished=False)  # a crash later loses nothing written so far
    bar.close()

    if all_ws:
        stacked = torch.stack(all_ws)
        atomic_save({"names": [p["name"] for p in summary.processed],
                     "sources": [p["source"] for p in summary.processed], "ws": stacked,
                     "checkpoint": checkpoint, "refined": refiner is not None}, out / "latents.pt")
        np.save(out / "latents.npy", stacked.numpy().astype(np.float32))
        stack_rows(grid_rows, out / "grid.png")
    _write_summary(out, summary, finished=True)
    return summary


def _save_multimodal(mixed: Any, j: int, folder: Path, source: Path, seed: int, entry: dict[str, Any]
                     ) -> list[Image.Image]:
    """Image ``j``'s multi-modal outputs: ``<k>.png`` and ``latents.pt`` in ``folder``; returns the PIL images."""
    folder.mkdir(parents=True, exist_ok=True)
    tiles = [to_pil(img.float()) for img in mixed.images[j]]
    for k, tile in enumerate(tiles):
        tile.save(folder / f"{k}.png")
    atomic_save({"ws": mixed.ws[j].float().cpu(), "inject_ws": mixed.inject_ws[j].float().cpu(),
                 "z": mixed.z[j].cpu(), "latent_mask": mixed.latent_mask, "mix_alpha": mixed.mix_alpha,
                 "mix_seed": seed, "source": str(source)}, folder / "latents.pt")
    entry["multimodal"] = [f"multimodal/{folder.name}/{k}.png" for k in range(len(tiles))]
    return tiles


def _write_summary(out: Path, summary: InvertSummary, finished: bool) -> None:
    """``summary.json``, atomically: after every batch (``finished: false``) and at the end."""
    atomic_write_json(out / "summary.json", {**summary.as_dict(), "finished": finished})


if __name__ == "__main__":  # deprecated spelling of: python -m inversion invert
    from inversion.cli import deprecated_alias

    raise SystemExit(deprecated_alias("invert", "inversion.invert"))
