"""Per-image results on disk, so an evaluation resumes where it stopped: :class:`ResultCache` and the fingerprint
that ties a cache to everything a per-image value depends on."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from .checkpoint import sha256_file
from .outputs import FORMAT, clean, write_json
from .settings import EvalSettings

__all__ = ["ResultCache", "fingerprint"]

log = logging.getLogger("inversion.evaluate")


def _safe_name(image_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", image_id)


def fingerprint(settings: EvalSettings, checkpoint: Mapping[str, Any], protocol: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a per-image value depends on (not the id list, batch size, limit or number of workers)."""
    metrics = settings.metrics
    metrics = OmegaConf.to_container(metrics, resolve=True) if OmegaConf.is_config(metrics) else dict(metrics)
    paths = {k: ((v or {}).get("module") or {}).get("path") for k, v in metrics.items()}
    files = {k: (sha256_file(p) if p else None) for k, p in paths.items()}
    data = settings.data
    return {
        "format": FORMAT,
        "checkpoint_sha256": checkpoint["sha256"],
        "generator_sha256": checkpoint.get("generator_sha256"),
        "num_iters": checkpoint["num_iters"],
        "protocol": dict(protocol),
        "metrics": {**metrics, "files_sha256": files},
        "data": {"name": data.name, "dataset": data.dataset, "input_resize_mode": data.input_resize_mode,
                 "expect": data.expect},
        "device": torch.device(settings.device).type,
    }


class ResultCache:
    """Per-image results in ``<dir>/per_image.jsonl`` (one JSON object per line), tied to a fingerprint."""

    def __init__(self, directory: Path, fingerprint: dict[str, Any], overwrite: bool = False):
        self.dir = directory
        self.file = directory / "per_image.jsonl"
        self.thumbs = directory / "thumbs"
        fp_file = directory / "fingerprint.json"
        fingerprint = clean(fingerprint)
        if overwrite and directory.exists():
            shutil.rmtree(directory)
        if fp_file.exists():
            old = json.loads(fp_file.read_text(encoding="utf-8"))
            if old != fingerprint:
                keys = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
                raise ValueError(
                    f"{directory} holds cached results of a different evaluation (differs in: {', '.join(keys)}). "
                    "Use another out_dir, or overwrite=true to discard the cache."
                )
        self.thumbs.mkdir(parents=True, exist_ok=True)
        if not fp_file.exists():
            write_json(fp_file, fingerprint)
        self.records: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        if not self.file.exists():
            return records
        with open(self.file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill: that image is simply redone
                    log.warning("ignoring unreadable cache line %s:%d", self.file, lineno)
                    continue
                records[str(rec["id"])] = rec
        return records

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.records

    def thumb_path(self, image_id: str) -> Path:
        return self.thumbs / f"{_safe_name(image_id)}.png"

    def add(self, records: Sequence[dict[str, Any]]) -> None:
        """Append records and flush them to disk (fsync), so a kill loses at most the batch in flight."""
        with open(self.file, "a", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, allow_nan=True) + "\n")
                self.records[str(rec["id"])] = rec
            f.flush()
            os.fsync(f.fileno())
