"""Latent-space edits (Image2StyleGAN / InterFaceGAN style): pure functions on ``ws`` [N, num_ws, w_dim].

None of these functions touches a generator; render the result with ``G.synthesis(ws)``. Inputs are never
modified in place. Where two latent batches are combined, a batch of one is broadcast against a batch of N.

* :func:`interpolate` -- morphing: ``(1 - t) * ws_a + t * ws_b`` for a list of ``t`` (Abdal et al. 2019, Sec. 7.1).
* :func:`crossover` -- style transfer: layers ``< layer`` from A, the rest from B (Sec. 7.2; wraps
  :func:`inversion.models.mix_styles`).
* :func:`style_mix` -- general style mixing: an arbitrary set of layers from B, the rest from A.
* :func:`expression_transfer` -- ``w1 + strength * D(w3 - w2)``, with ``D`` a thresholded and (optionally)
  renormalised difference (Sec. 7.3; see the function for exactly what ``D`` is).
* :func:`apply_direction` / :func:`load_direction` -- InterFaceGAN-style linear edits along a stored direction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from ..models.stylegan2 import mix_styles
from .io import read_tensor_file

__all__ = [
    "LayerSpec",
    "apply_direction",
    "crossover",
    "expression_difference",
    "expression_transfer",
    "interpolate",
    "layer_indices",
    "load_direction",
    "style_mix",
]

LayerSpec = int | slice | range | Sequence[int] | None  # None = every layer


# ----------------------------------------------------------------------------------------------------------
# Helpers.


def _check_latents(x: torch.Tensor, name: str, ndims: tuple[int, ...] = (3,)) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim not in ndims or not x.is_floating_point():
        want = " or ".join({2: "[N, w_dim]", 3: "[N, num_ws, w_dim]"}[d] for d in ndims)
        raise ValueError(f"{name} must be a float tensor {want}, got {x.dtype} {tuple(x.shape)}")


def _broadcast_batch(*tensors: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
    """Check that the tensors agree on everything but the batch size, and expand batches of one to N."""
    shapes = {tuple(t.shape[1:]) for t in tensors}
    batches = {t.shape[0] for t in tensors} - {1}
    if len(shapes) != 1 or len(batches) > 1:
        got = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, tensors))
        raise ValueError(f"latent shapes do not match (batch sizes may differ only where one is 1): {got}")
    n = max(t.shape[0] for t in tensors)
    return [t.expand(n, *t.shape[1:]) for t in tensors]


def layer_indices(
    layers: LayerSpec,  # None (all), an int, a slice, a range, or a sequence of ints.
    num_ws: int,  # Number of layers the indices refer to.
) -> list[int]:
    """Resolve a layer selection to a sorted list of unique indices in ``[0, num_ws)``.

    Slices follow Python semantics (negative bounds count from the end, out-of-range bounds are clipped);
    explicit ints (alone, in a range or in a sequence) must lie in ``[0, num_ws)``.
    """
    if layers is None:
        return list(range(num_ws))
    if isinstance(layers, slice):
        return list(range(*layers.indices(num_ws)))
    if isinstance(layers, torch.Tensor | np.ndarray):
        layers = layers.reshape(-1).tolist()
    items = [layers] if isinstance(layers, int) else list(layers)
    for i in items:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"layer indices must be ints, got {i!r} in {layers!r}")
        if not 0 <= i < num_ws:
            raise ValueError(f"layer index {i} out of range [0, {num_ws}) in {layers!r}")
    return sorted({int(i) for i in items})


def _layer_mask(layers: LayerSpec, num_ws: int, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(num_ws, dtype=torch.bool, device=device)
    mask[layer_indices(layers, num_ws)] = True
    return mask.view(1, num_ws, 1)


# ----------------------------------------------------------------------------------------------------------
# Morphing and style mixing.


def interpolate(
    ws_a: torch.Tensor,  # Start latents [N, num_ws, w_dim] (or [N, w_dim]).
    ws_b: torch.Tensor,  # End latents, same shape (a batch of 1 broadcasts).
    num_frames: int | None = None,  # Evenly spaced frames, t = linspace(0, 1, num_frames); >= 2.
    *,
    ts: Sequence[float] | torch.Tensor | None = None,  # Explicit weights t instead (values outside [0, 1] extrapolate).
) -> torch.Tensor:
    """Linear interpolation ``(1 - t) * ws_a + t * ws_b`` -> [T, N, ...] (one frame per ``t``).

    Pass exactly one of ``num_frames`` and ``ts``. Frames at ``t = 0`` and ``t = 1`` equal ``ws_a`` and ``ws_b``
    exactly (bit for bit).
    """
    _check_latents(ws_a, "ws_a", (2, 3))
    _check_latents(ws_b, "ws_b", (2, 3))
    ws_a, ws_b = _broadcast_batch(ws_a, ws_b, names=("ws_a", "ws_b"))
    if (num_frames is None) == (ts is None):
        raise ValueError("pass exactly one of num_frames and ts")
    if ts is None:
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 2:
            raise ValueError(f"num_frames must be an int >= 2, got {num_frames!r}")
        t = torch.linspace(0, 1, num_frames, dtype=torch.float64)
    else:
        t = torch.as_tensor(ts, dtype=torch.float64).detach().cpu()
        if t.ndim != 1 or t.numel() == 0 or not torch.isfinite(t).all():
            raise ValueError(f"ts must be a non-empty 1-D sequence of finite numbers, got {ts!r}")
    t = t.to(device=ws_a.device, dtype=ws_a.dtype).view(-1, *([1] * ws_a.ndim))
    out = (1 - t) * ws_a.unsqueeze(0) + t * ws_b.unsqueeze(0)
    assert out.shape == (t.shape[0], *ws_a.shape)
    return out


def crossover(
    ws_a: torch.Tensor,  # Content/structure latents [N, num_ws, w_dim] (coarse layers come from here).
    ws_b: torch.Tensor,  # Style latents [N, num_ws, w_dim] (a batch of 1 broadcasts).
    layer: int,  # Crossover point in [0, num_ws]: layers < layer from A, layers >= layer from B.
) -> torch.Tensor:
    """Image2StyleGAN style transfer: ``layer = 0`` returns B, ``layer = num_ws`` returns A."""
    _check_latents(ws_a, "ws_a")
    _check_latents(ws_b, "ws_b")
    ws_a, ws_b = _broadcast_batch(ws_a, ws_b, names=("ws_a", "ws_b"))
    num_ws = ws_a.shape[1]
    if isinstance(layer, bool) or not isinstance(layer, int | np.integer):
        raise TypeError(f"layer must be an int, got {layer!r}")
    if not 0 <= layer <= num_ws:
        raise ValueError(f"crossover layer must be in [0, {num_ws}], got {layer}")
    out = mix_styles(ws_a, ws_b, int(layer))
    assert out.shape == ws_a.shape
    return out


def style_mix(
    ws_a: torch.Tensor,  # Base latents [N, num_ws, w_dim].
    ws_b: torch.Tensor,  # Donor latents [N, num_ws, w_dim] (a batch of 1 broadcasts).
    layers: LayerSpec,  # Layers taken from B: int, slice, range or sequence of ints (None = all).
) -> torch.Tensor:
    """Style mixing: the listed layers from ``ws_b``, every other layer from ``ws_a``."""
    _check_latents(ws_a, "ws_a")
    _check_latents(ws_b, "ws_b")
    ws_a, ws_b = _broadcast_batch(ws_a, ws_b, names=("ws_a", "ws_b"))
    mask = _layer_mask(layers, ws_a.shape[1], ws_a.device)
    return torch.where(mask, ws_b, ws_a)


# ----------------------------------------------------------------------------------------------------------
# Expression transfer.


def expression_difference(
    w2: torch.Tensor,  # Source latents with the neutral expression [N, num_ws, w_dim] (or [N, w_dim]).
    w3: torch.Tensor,  # The same source with the target expression, same shape.
    *,
    threshold: float = 0.5,  # Relative per-channel threshold (x the layer's RMS difference); 0 = keep all.
    layer_threshold: float = 0.0,  # Absolute threshold on each layer's L2 norm (Abdal et al.); 0 = off.
    normalize: bool = True,  # Rescale each layer's kept difference to the L2 norm of its full difference.
) -> torch.Tensor:
    """The edit direction ``D`` used by :func:`expression_transfer` (see there), same shape as ``w3 - w2``."""
    _check_latents(w2, "w2", (2, 3))
    _check_latents(w3, "w3", (2, 3))
    w2, w3 = _broadcast_batch(w2, w3, names=("w2", "w3"))
    for name, value in (("threshold", threshold), ("layer_threshold", layer_threshold)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    delta = w3 - w2  # [N, num_ws, w_dim] or [N, w_dim]: the last axis holds the channels of one layer
    keep = torch.ones_like(delta, dtype=torch.bool)
    if threshold > 0:
        rms = delta.square().mean(dim=-1, keepdim=True).sqrt()
        keep = delta.abs() >= threshold * rms
    full_norm = delta.norm(dim=-1, keepdim=True)
    if layer_threshold > 0:
        keep = keep & (full_norm >= layer_threshold)
    kept = torch.where(keep, delta, torch.zeros_like(delta))
    if normalize:
        kept_norm = kept.norm(dim=-1, keepdim=True)
        scale = torch.where(kept_norm > 0, full_norm / kept_norm.clamp_min(torch.finfo(delta.dtype).tiny), 0.0)
        kept = kept * scale
    return kept


def expression_transfer(
    w1: torch.Tensor,  # Target latents [N, num_ws, w_dim] (or [N, w_dim]): the face that gets the expression.
    w2: torch.Tensor,  # Source latents with a neutral expression, same shape (a batch of 1 broadcasts).
    w3: torch.Tensor,  # Source latents with the expression to transfer, same shape as w2.
    *,
    strength: float = 1.0,  # lambda: 0 returns w1 exactly, negative values apply the opposite change.
    threshold: float = 0.5,  # Relative per-channel threshold (x the layer's RMS difference); 0 = keep all.
    layer_threshold: float = 0.0,  # Absolute threshold on each layer's L2 norm (Abdal et al. use 1); 0 = off.
    normalize: bool = True,  # Rescale each layer's kept difference to the L2 norm of its full difference.
) -> torch.Tensor:
    """Image2StyleGAN expression transfer: ``w1 + strength * D``, with ``delta = w3 - w2`` and ``D`` built per
    sample and per layer (a row of ``w_dim`` channels; a [N, w_dim] input is one layer) as follows:

    1. channel threshold: channel ``c`` of layer ``l`` is kept iff
       ``|delta[l, c]| >= threshold * rms_l`` with ``rms_l = sqrt(mean_c delta[l, c]^2)``; the others are set to 0.
       The threshold is relative, so it does not depend on the scale of the latent space; ``threshold = 1`` keeps
       the channels whose change is above the layer's RMS change, 0 keeps every channel.
    2. layer threshold (per-layer thresholding as reimplementations of Abdal et al. 2019 describe it -- zero
       every layer vector of the W+ difference whose L2 norm is below a heuristic bound, e.g. 1 for 18 x 512
       FFHQ codes; not checked against the paper's text): if
       ``||delta[l]||_2 < layer_threshold`` the whole layer is set to 0. It is absolute, so off (0) by default.
    3. normalisation (``normalize=True``): each layer's kept difference is multiplied by
       ``||delta[l]||_2 / ||kept[l]||_2`` (layers with nothing kept stay 0), so it keeps the step length of the
       full difference and only its direction is sparsified: ``strength = 1`` moves every surviving layer as
       far as the source's expression change did, whatever the thresholds. With ``normalize=False`` the kept
       channels are used as they are, and ``threshold = layer_threshold = 0`` gives the plain ``w1 + strength *
       (w3 - w2)``.

    ``D`` does not depend on ``strength``, so the result is linear in ``strength``; ``w3 == w2`` or
    ``strength == 0`` returns ``w1`` exactly. Returns a tensor shaped like ``w1`` (broadcast to the batch).
    """
    _check_latents(w1, "w1", (2, 3))
    _check_latents(w2, "w2", (2, 3))
    _check_latents(w3, "w3", (2, 3))
    w1, w2, w3 = _broadcast_batch(w1, w2, w3, names=("w1", "w2", "w3"))
    direction = expression_difference(
        w2, w3, threshold=threshold, layer_threshold=layer_threshold, normalize=normalize
    )
    if strength == 0:
        return w1.clone()
    out = w1 + strength * direction
    assert out.shape == w1.shape
    return out


# ----------------------------------------------------------------------------------------------------------
# Linear directions (InterFaceGAN and friends).


def apply_direction(
    ws: torch.Tensor,  # Latents [N, num_ws, w_dim].
    direction: torch.Tensor,  # Edit direction [w_dim], [1, w_dim] or [num_ws, w_dim].
    strength: float | torch.Tensor,  # Step along the direction: a number or a per-sample [N] tensor.
    layers: LayerSpec = None,  # Layers to edit (int, slice, range or sequence of ints); None = all.
    *,
    normalize: bool = False,  # First scale each row of the direction to unit L2 norm.
) -> torch.Tensor:
    """``ws + strength * direction`` on the selected layers; every other layer is returned unchanged (bit for
    bit), and ``strength == 0`` returns ``ws`` exactly. InterFaceGAN boundaries are already unit normals, so
    ``normalize`` is off by default."""
    _check_latents(ws, "ws")
    n, num_ws, w_dim = ws.shape
    if not isinstance(direction, torch.Tensor):
        direction = torch.as_tensor(np.asarray(direction))
    if direction.ndim == 1:
        direction = direction.unsqueeze(0)
    if direction.ndim != 2 or direction.shape[1] != w_dim or direction.shape[0] not in (1, num_ws):
        raise ValueError(
            f"direction must be [{w_dim}], [1, {w_dim}] or [{num_ws}, {w_dim}] for ws {tuple(ws.shape)}, "
            f"got {tuple(direction.shape)}"
        )
    direction = direction.to(device=ws.device, dtype=ws.dtype)
    if normalize:
        norm = direction.norm(dim=1, keepdim=True)
        if (norm == 0).any():
            raise ValueError("cannot normalize a direction with an all-zero row")
        direction = direction / norm
    strength = torch.as_tensor(strength, dtype=ws.dtype, device=ws.device)
    if strength.ndim > 1 or strength.numel() not in (1, n) or not torch.isfinite(strength).all():
        raise ValueError(f"strength must be a finite number or a [{n}] tensor, got {tuple(strength.shape)}")
    if (strength == 0).all():
        return ws.clone()
    step = strength.reshape(-1, 1, 1) * direction.unsqueeze(0)  # [N or 1, num_ws or 1, w_dim]
    mask = _layer_mask(layers, num_ws, ws.device)
    out = torch.where(mask, ws + step, ws)
    assert out.shape == ws.shape
    return out


def load_direction(
    path: str | os.PathLike,  # .npy (numpy array) or .pt / .pth (a tensor, or a dict holding exactly one tensor).
    num_ws: int | None = None,  # If given, a 2-D direction must have 1 or num_ws rows.
    w_dim: int | None = None,  # If given, the last axis must have this size.
) -> torch.Tensor:
    """Load an edit direction as float32, shaped [w_dim] (also for a stored [1, w_dim]) or [num_ws, w_dim].

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file) for an unknown
    suffix, an unreadable file, or a wrong shape, dtype or non-finite values.
    """
    stored = read_tensor_file(path, "direction")
    direction = stored
    if direction.ndim == 2 and direction.shape[0] == 1:
        direction = direction[0]
    rows_ok = direction.ndim == 1 or (direction.ndim == 2 and (num_ws is None or direction.shape[0] == num_ws))
    dim_ok = direction.ndim in (1, 2) and direction.shape[-1] > 0 and (w_dim is None or direction.shape[-1] == w_dim)
    if not (rows_ok and dim_ok):
        want = f"[{w_dim or 'w_dim'}], [1, {w_dim or 'w_dim'}] or [{num_ws or 'num_ws'}, {w_dim or 'w_dim'}]"
        raise ValueError(f"{path}: direction must be {want}, got shape {tuple(stored.shape)}")
    if not torch.isfinite(direction).all():
        raise ValueError(f"{path}: direction contains NaN or inf")
    return direction
