"""The checkpoint under evaluation: loading it, checking its generator against the data, describing it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import INVERTER_FORMAT, load_inverter
from ..inverter import Inverter
from ..models import CheckpointError
from ..models.loading import torch_load
from .settings import EvalSettings

__all__ = ["check_generator", "checkpoint_info", "load_checkpoint", "sha256_file"]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_checkpoint(path: str, generator_path: str | None, device: torch.device) -> Inverter:
    """``load_inverter`` with evaluation's extra check: ``generator_path`` only applies to our exports."""
    if generator_path is not None and Path(path).is_file():
        head = torch_load(path)
        if not (isinstance(head, dict) and head.get("format") == INVERTER_FORMAT):
            raise CheckpointError(
                f"{path}: generator_path={generator_path} was given, but this is not an inversion export: official "
                "pSp/e4e/ReStyle files carry their generator (decoder.*) inside; drop generator_path"
            )
        del head
    return load_inverter(path, device=device, generator_path=generator_path)


def check_generator(inverter: Inverter, expect: Mapping[str, Any] | None, source: str, data_name: str) -> None:
    """Raise :class:`CheckpointError` when the checkpoint's generator does not match what the data expects."""
    G = inverter.generator
    have = {"img_resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim}
    bad = [f"{k}: checkpoint {have[k]}, eval_data={data_name} expects {v}"
           for k, v in (expect or {}).items() if v is not None and k in have and int(v) != have[k]]
    unknown = sorted(set(expect or {}) - set(have))
    if unknown:
        raise ValueError(f"eval_data.expect has unknown keys {unknown}; allowed: {sorted(have)}")
    if bad:
        raise CheckpointError(
            f"{source}: its generator does not match the evaluation data ({'; '.join(bad)}). Evaluate it on the data "
            "its generator was trained for, point generator_path= at the right generator (our exports), or "
            "override eval_data.expect.<key>=null if this is intended."
        )


def checkpoint_info(settings: EvalSettings, inverter: Inverter) -> dict[str, Any]:
    """metrics.json's ``checkpoint`` section: file, hashes, architecture and the ReStyle steps evaluated."""
    G = inverter.generator
    info = {
        "path": settings.checkpoint,
        "sha256": sha256_file(settings.checkpoint),
        "generator_path": settings.generator_path,
        "encoder": type(inverter.encoder).__name__,
        "residual": bool(inverter.residual),
        "num_iters": settings.num_iters if settings.num_iters is not None else int(inverter.num_iters),
        "encoder_size": inverter.encoder_size,
        "encoder_resize_mode": inverter.resize_mode,
        "generator": {"img_resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim},
    }
    if settings.generator_path is not None:
        info["generator_sha256"] = sha256_file(settings.generator_path)
    return info
