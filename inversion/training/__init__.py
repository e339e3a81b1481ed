"""Training: the LightningModule around the one inversion loop, callbacks and checkpoint I/O."""

from ..losses import LossTerm
from .build import InversionDataModule, build_module, build_trainer, train
from .callbacks import AtomicCheckpointIO, ExportInverter
from .e4e import E4EModule
from .module import Collaborative, InversionModule
from .ranger import Ranger

__all__ = [
    "AtomicCheckpointIO", "Collaborative", "E4EModule", "ExportInverter", "InversionDataModule", "InversionModule",
    "LossTerm", "Ranger", "build_module", "build_trainer", "train",
]
