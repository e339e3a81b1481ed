"""Checkpoint I/O and callbacks: atomic writes, inference export."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from ..checkpoints import save_inverter
from ..imageio import atomic_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temp file in the same folder, then rename: a kill never leaves a torn file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        atomic_save(checkpoint, path)


class ExportInverter(pl.Callback):
    """Write the small inference checkpoint (encoder + settings + generator reference) at every save and at the end."""

    def __init__(self, path: str | os.PathLike, generator_config: dict[str, Any]):
        self.path = Path(path)
        self.generator_config = dict(generator_config)

    def export(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        inv = module.inverter
        save_inverter(inv, self.path, encoder_config=inv.encoder_config, generator_config=self.generator_config,
                      extra={"global_step": trainer.global_step})

    def on_save_checkpoint(self, trainer, module, checkpoint) -> None:
        self.export(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        self.export(trainer, module)
