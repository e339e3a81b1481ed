"""StyleGAN3's filtered leaky ReLU and its low-pass filters, in plain PyTorch (no compiled ops).

The operation (NVIDIA's ``torch_utils/ops/filtered_lrelu.py``) maps ``x`` [N, C, H, W] to::

    x + bias -> insert up-1 zeros after each sample -> pad / crop -> convolve with fu (gain up**2)
      -> leaky ReLU(slope) * gain -> clamp(+-clamp) -> convolve with fd -> keep every down-th sample

Filters are ``None`` (identity), 1-D (separable, the same taps along both axes) or 2-D. ``padding`` is
``[x_before, x_after, y_before, y_after]`` relative to the up-sampled image (negative = crop), exactly as NVIDIA's.

* :func:`filtered_lrelu_ref` computes that sequence literally (the maths of NVIDIA's ``_filtered_lrelu_ref``).
* :func:`filtered_lrelu` is the version the model uses. Zero insertion + filtering is done polyphase: one depthwise
  convolution with ``up * up`` sub-filters per channel (each ``taps / up`` long per axis) on the original samples,
  then one interleaving copy, so no multiply ever touches an inserted zero; only the output samples the
  down-filter reads are computed (negative padding crops the input first). The activation gain is folded into the
  up-filter (the leaky ReLU is positively homogeneous), the leaky ReLU and clamp run in place when autograd saves
  nothing, and the down-filter + decimation is one strided 2-D convolution (the outer product of a 1-D filter, or
  the radial filter of config R). ``separable=True`` runs 1-D filters as two 1-D passes each instead (same result;
  not faster on CPU at these sizes: fewer multiplies but twice the passes over memory). :func:`input_trim` tells a
  caller which input samples matter at all, so the preceding convolution can skip the rest.

:func:`design_lowpass_filter` reproduces NVIDIA's filter design (``scipy.signal.firwin`` Kaiser low-pass, or the
jinc-based radial filter) with numpy alone, so scipy is not needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "design_lowpass_filter",
    "filtered_lrelu",
    "filtered_lrelu_ref",
    "input_trim",
    "upfirdn2d_ref",
]

Padding = Sequence[int]  # [x_before, x_after, y_before, y_after]


# --------------------------------------------------------------------------- filter design


def _kaiser_beta(numtaps: int, width: float) -> float:
    """Kaiser window beta for ``numtaps`` taps and a transition ``width`` relative to Nyquist (scipy's formulas)."""
    atten = 2.285 * (numtaps - 1) * np.pi * width + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def _bessel_j1(x: np.ndarray, points: int = 512) -> np.ndarray:
    """Bessel J1 from its integral ``(1/2pi) int_0^2pi cos(t - x sin t) dt``; the midpoint rule on a periodic analytic
    integrand is exact to float64 rounding for |x| << ``points`` (float64 error ~1e-15 for the filters here)."""
    t = (np.arange(points) + 0.5) * (2 * np.pi / points)
    return np.cos(t - np.asarray(x, dtype=np.float64)[..., None] * np.sin(t)).mean(-1)


def design_lowpass_filter(
    numtaps: int,  # Filter length; 1 = identity (returns None).
    cutoff: float,  # Cutoff frequency (same unit as fs).
    width: float,  # Transition band width (same unit as fs).
    fs: float,  # Sampling rate.
    radial: bool = False,  # 2-D radially symmetric jinc filter instead of a separable 1-D one.
) -> torch.Tensor | None:
    """NVIDIA's ``SynthesisLayer.design_lowpass_filter``: a Kaiser-windowed low-pass normalised to unit DC gain,
    [numtaps] float32 (``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)``), or [numtaps, numtaps] when
    ``radial`` (jinc times an outer-product Kaiser window)."""
    assert numtaps >= 1
    if numtaps == 1:
        return None
    nyq = fs / 2
    beta = _kaiser_beta(numtaps, width / nyq)
    if not radial:
        m = np.arange(numtaps) - (numtaps - 1) / 2
        c = cutoff / nyq
        f = c * np.sinc(c * m) * np.kaiser(numtaps, beta)
        return torch.as_tensor(f / f.sum(), dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = _bessel_j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    window = np.kaiser(numtaps, beta)
    f = f * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


# --------------------------------------------------------------------------- reference


def _as_2d(f: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    if f is None:
        return torch.ones(1, 1, device=device)
    return f[:, None] * f[None, :] if f.ndim == 1 else f


def upfirdn2d_ref(
    x: torch.Tensor,  # [N, C, H, W]
    f: torch.Tensor | None,  # None, [taps] (separable) or [taps_y, taps_x]
    up: int = 1,
    down: int = 1,
    padding: Padding = (0, 0, 0, 0),  # [x_before, x_after, y_before, y_after], after up-sampling; negative crops
    gain: float = 1.0,  # Overall gain (a separable filter gets sqrt(gain) per axis).
) -> torch.Tensor:
    """NVIDIA's ``upfirdn2d`` semantics, computed literally: zero insertion, pad / crop, true convolution (the
    filter is flipped), then decimation. A separable filter is applied as two 1-D passes, as NVIDIA's does."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = (int(p) for p in padding)
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    if f is None:
        f = torch.ones(1, 1, device=x.device)
    f = (f * gain ** (f.ndim / 2)).to(x.dtype).flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    else:
        x = F.conv2d(x, f.view(1, 1, 1, -1).expand(c, 1, 1, f.numel()), groups=c)
        x = F.conv2d(x, f.view(1, 1, -1, 1).expand(c, 1, f.numel(), 1), groups=c)
    return x[:, :, ::down, ::down]


def filtered_lrelu_ref(
    x: torch.Tensor,  # [N, C, H, W]
    fu: torch.Tensor | None = None,  # Up-sampling filter: None, [taps] or [taps, taps].
    fd: torch.Tensor | None = None,  # Down-sampling filter: None, [taps] or [taps, taps].
    b: torch.Tensor | None = None,  # Bias [C], added first.
    up: int = 1,
    down: int = 1,
    padding: Padding = (0, 0, 0, 0),  # [x_before, x_after, y_before, y_after] w.r.t. the up-sampled image.
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
) -> torch.Tensor:
    """The literal sequence of NVIDIA's ``_filtered_lrelu_ref``: bias, up-FIR (gain up**2), leaky ReLU * gain,
    clamp, down-FIR. Slow and memory hungry; the reference for :func:`filtered_lrelu`."""
    if b is not None:
        x = x + b.to(x.dtype).view(1, -1, 1, 1)
    x = upfirdn2d_ref(x, fu, up=up, padding=padding, gain=up**2)
    x = F.leaky_relu(x, slope) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d_ref(x, fd, down=down)


# --------------------------------------------------------------------------- fast path


def _axis_plan(size: int, up: int, taps: int, pad0: int, pad1: int) -> tuple[int, int, int, int, int]:
    """Polyphase plan for one axis: (sub-filter length T, first and last polyphase index needed, offset of the first
    output in the interleaved result, output length). Output ``j`` is the full convolution of the zero-inserted
    input with the filter at ``o = j + taps - 1 - pad0``; ``o = q * up + r`` reads input ``q - t`` with tap
    ``t * up + r``."""
    t = -(-taps // up)
    out_len = size * up + pad0 + pad1 - taps + 1
    o0 = taps - 1 - pad0
    q_lo, q_hi = o0 // up, (o0 + out_len - 1) // up
    return t, q_lo, q_hi, o0 - q_lo * up, out_len


def input_trim(
    size: int,  # Input length along the axis.
    up: int,
    taps: int,  # Up-filter taps along the axis (1 for None).
    pad0: int,
    pad1: int,
) -> tuple[int, int]:
    """(first, last) input index that can reach the output of the up-sampling step; samples outside contribute
    nothing. Cropping them and adding ``first * up`` / ``(size - 1 - last) * up`` to the paddings is exact."""
    t, q_lo, q_hi, _, _ = _axis_plan(size, up, taps, pad0, pad1)
    return max(q_lo - (t - 1), 0), min(q_hi, size - 1)


def _upsample(x: torch.Tensor, f: torch.Tensor, up_y: int, up_x: int, pad: Padding) -> torch.Tensor:
    """Zero insertion by (up_y, up_x) + pad + convolution with the 2-D ``f`` [ky, kx] (any gain already in ``f``),
    computed polyphase: one grouped conv with up_y * up_x sub-filters per channel, then interleaving."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = pad
    ty, qy0, qy1, offy, ly = _axis_plan(h, up_y, f.shape[0], py0, py1)
    tx, qx0, qx1, offx, lx = _axis_plan(w, up_x, f.shape[1], px0, px1)
    # x padded (or cropped) so that a valid correlation yields exactly the polyphase rows qy0..qy1 / columns qx0..qx1
    x = F.pad(x, [tx - 1 - qx0, qx1 - w + 1, ty - 1 - qy0, qy1 - h + 1])
    f = F.pad(f, [0, tx * up_x - f.shape[1], 0, ty * up_y - f.shape[0]])
    sub = f.view(ty, up_y, tx, up_x).permute(1, 3, 0, 2).flip([2, 3])  # [ry, rx, T_y, T_x], correlation taps
    weight = sub.reshape(1, up_y * up_x, ty, tx).expand(c, -1, -1, -1).reshape(c * up_y * up_x, 1, ty, tx)
    y = F.conv2d(x, weight.to(x.dtype), groups=c)  # [N, C * up_y * up_x, Qy, Qx]
    qy, qx = y.shape[2:]
    if up_y * up_x > 1:
        y = y.view(n, c, up_y, up_x, qy, qx).permute(0, 1, 4, 2, 5, 3).reshape(n, c, qy * up_y, qx * up_x)
    return y[:, :, offy : offy + ly, offx : offx + lx]


def _downsample(x: torch.Tensor, f: torch.Tensor | None, down: int, separable: bool) -> torch.Tensor:
    """Convolution with ``f`` (valid) and decimation by ``down``, as strided correlations with the flipped taps: two
    1-D passes for a 1-D filter when ``separable``, else one 2-D pass (outer product for a 1-D filter)."""
    c = x.shape[1]
    if f is None:
        return x[:, :, ::down, ::down] if down > 1 else x
    f = f.to(x.dtype).flip(list(range(f.ndim)))
    if f.ndim == 1 and separable:
        k = f.numel()
        x = F.conv2d(x, f.view(1, 1, 1, k).expand(c, 1, 1, k), stride=(1, down), groups=c)
        return F.conv2d(x, f.view(1, 1, k, 1).expand(c, 1, k, 1), stride=(down, 1), groups=c)
    f = _as_2d(f, x.device)
    return F.conv2d(x, f[None, None].expand(c, 1, *f.shape), stride=down, groups=c)


def filtered_lrelu(
    x: torch.Tensor,  # [N, C, H, W]
    fu: torch.Tensor | None = None,  # Up-sampling filter: None, [taps] or [taps, taps].
    fd: torch.Tensor | None = None,  # Down-sampling filter: None, [taps] or [taps, taps].
    b: torch.Tensor | None = None,  # Bias [C], added first.
    up: int = 1,
    down: int = 1,
    padding: Padding = (0, 0, 0, 0),  # [x_before, x_after, y_before, y_after] w.r.t. the up-sampled image.
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    separable: bool = False,  # 1-D filters as two 1-D passes each (else one 2-D pass of their outer product).
) -> torch.Tensor:
    """Fast :func:`filtered_lrelu_ref` (same arguments, same result up to float rounding; differentiable)."""
    assert x.ndim == 4 and up >= 1 and down >= 1 and gain > 0 and slope >= 0
    if isinstance(padding, int):
        padding = [padding] * 4
    px0, px1, py0, py1 = (int(p) for p in padding)
    owned = False  # x is a tensor made here, so in-place ops cannot touch the caller's
    if b is not None:
        x, owned = x + b.to(x.dtype).view(1, -1, 1, 1), True
    if fu is None and up == 1:
        if any((px0, px1, py0, py1)):
            x, owned = F.pad(x, [px0, px1, py0, py1]), True
        if gain != 1:
            x, owned = x * gain, True
    elif fu is not None and fu.ndim == 1 and separable:  # W pass (gain up), then H pass (gain up * gain)
        x = _upsample(x, fu[None, :] * up, 1, up, (px0, px1, 0, 0))
        x, owned = _upsample(x, fu[:, None] * (up * gain), up, 1, (0, 0, py0, py1)), True
    else:
        x, owned = _upsample(x, _as_2d(fu, x.device) * (up * up * gain), up, up, (px0, px1, py0, py1)), True
    # in place only when nothing can be saved for backward (x.requires_grad is not reliable under torch.func.vmap:
    # a batched tensor whose outer tensor requires grad reports False, as in pivotal tuning's per-image deltas)
    inplace = owned and not torch.is_grad_enabled()
    if slope != 1:
        x = F.leaky_relu_(x, slope) if inplace else F.leaky_relu(x, slope)
    if clamp is not None:
        x = x.clamp(-clamp, clamp)  # out of place: clamp_ has no torch.func.vmap batching rule (PTI's renders)
    return _downsample(x, fd, down, separable)
