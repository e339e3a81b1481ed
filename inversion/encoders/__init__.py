"""Inversion encoders: pSp, e4e and ReStyle over IR-SE50 / ResNet-34 backbones, and the ArcFace IR-SE50 net.

All encoders map images [N, C, H, W] to ``ws`` [N, num_ws, w_dim]. With default arguments each one has the
official architecture and ``state_dict`` key names, so the ``encoder.*`` weights of the official checkpoints
load strictly after stripping the ``encoder.`` prefix.
"""

from .e4e import Encoder4Editing, ProgressiveStageMixin
from .irse import Backbone, load_backbone_weights
from .psp import GradualStyleBlock, GradualStyleEncoder, WEncoder
from .restyle import (
    BackboneEncoder,
    ProgressiveBackboneEncoder,
    ResNetBackboneEncoder,
    ResNetProgressiveBackboneEncoder,
    load_resnet34_weights,
)

__all__ = [
    "Backbone",
    "BackboneEncoder",
    "Encoder4Editing",
    "GradualStyleBlock",
    "GradualStyleEncoder",
    "ProgressiveBackboneEncoder",
    "ProgressiveStageMixin",
    "ResNetBackboneEncoder",
    "ResNetProgressiveBackboneEncoder",
    "WEncoder",
    "load_backbone_weights",
    "load_resnet34_weights",
]
