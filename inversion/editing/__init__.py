"""Latent-space editing: morphing, style transfer / mixing, expression transfer and linear directions on
``ws`` [N, num_ws, w_dim], plus small helpers to save the rendered results (grids, GIFs)."""

from .io import read_tensor_file, save_frames_gif
from .ops import (
    LayerSpec,
    apply_direction,
    crossover,
    expression_difference,
    expression_transfer,
    interpolate,
    layer_indices,
    load_direction,
    style_mix,
)

__all__ = [
    "LayerSpec",
    "apply_direction",
    "crossover",
    "expression_difference",
    "expression_transfer",
    "interpolate",
    "layer_indices",
    "load_direction",
    "read_tensor_file",
    "save_frames_gif",
    "style_mix",
]
