"""Training: the LightningModule around the one inversion loop, callbacks and checkpoint I/O."""

from .callbacks import AtomicCheckpointIO, ExportInverter
from .module import InversionModule, LossTerm

__all__ = ["AtomicCheckpointIO", "ExportInverter", "InversionModule", "LossTerm"]
