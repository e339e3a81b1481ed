"""StyleGAN3 generator (configs T and R) in plain PyTorch (no compiled ops).

The module tree, ``state_dict`` keys, shapes and maths are those of NVIDIA's ``training/networks_stylegan3.py``
``Generator`` (github.com/NVlabs/stylegan3), so its state dict loads with ``strict=True``:

* mapping: 2nd-moment normalised z (and embedded, normalised c when ``c_dim > 0``), ``num_layers`` fully connected
  layers (equalized lr, multiplier 0.01, bias + leaky ReLU(0.2) * sqrt(2)), broadcast to ``num_ws`` = num_layers + 2
  latents, truncation ``w_avg.lerp(w, psi)`` on layers < cutoff.
* ``synthesis.input``: Fourier features (fixed random frequencies / phases, rotated and translated by an affine of
  ``ws[0]``, then by the user ``transform`` buffer), a learned channel mixing matrix.
* ``synthesis.L{i}_{size}_{channels}``: modulated conv (weight and style pre-normalised, demodulated, scaled by
  ``magnitude_ema ** -0.5``), then the filtered leaky ReLU of :mod:`inversion.models.filtered_lrelu` (bias, up-sample
  to the layer's temporary rate with a Kaiser low-pass, leaky ReLU * sqrt(2), clamp to +-256, low-pass and decimate).
  The last layer is the 1x1 toRGB (no demodulation, linear, clamped); the output is scaled by ``output_scale``.

Sampling rates, cutoffs, sizes, channels and paddings follow NVIDIA's schedule; their filters are designed at
construction (numpy only) and stored as the same buffers. Everything runs in the parameters' dtype: float32, as
NVIDIA's ``force_fp32`` (``num_fp16_res`` is accepted and ignored), or float64 after ``.double()``. StyleGAN3 has no
noise inputs: ``noise_mode`` / ``noise`` / ``force_fp32`` are accepted and ignored.

Shapes: ``z`` [N, z_dim]; ``c`` [N, c_dim]; ``ws`` [N, num_ws, w_dim]; images [N, img_channels, R, R], nominally
in [-1, 1] (not clamped).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .filtered_lrelu import design_lowpass_filter, filtered_lrelu, input_trim

__all__ = [
    "StyleGAN3Generator",
    "MappingNetwork",
    "SynthesisInput",
    "SynthesisLayer",
    "SynthesisNetwork",
    "modulated_conv2d",
    "synthesis_schedule",
]

SQRT2 = math.sqrt(2.0)


class FullyConnectedLayer(nn.Module):
    """Equalized-lr linear layer (weight stored as N(0, weight_init / lr) / lr-scaled bias); optional leaky ReLU."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        lrelu: bool = False,  # Bias + leaky ReLU(0.2) * sqrt(2) instead of linear.
        lr_multiplier: float = 1.0,
        weight_init: float = 1.0,  # Initial standard deviation of the weight tensor.
        bias_init: float | list[float] = 0.0,  # Initial bias value(s).
    ):
        super().__init__()
        self.lrelu = lrelu
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (weight_init / lr_multiplier))
        bias = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features]) / lr_multiplier
        self.bias = nn.Parameter(torch.as_tensor(bias, dtype=torch.float32).clone())
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype)
        b = b * self.bias_gain if self.bias_gain != 1 else b
        if not self.lrelu:
            return torch.addmm(b[None], x, w.t())
        return F.leaky_relu(x.matmul(w.t()) + b, 0.2) * SQRT2


def _normalize_2nd_moment(x: torch.Tensor) -> torch.Tensor:
    return x * (x.square().mean(1, keepdim=True) + 1e-8).rsqrt()


class MappingNetwork(nn.Module):
    """z (+ c) -> ws [N, num_ws, w_dim] with the ``w_avg`` buffer used for truncation."""

    def __init__(
        self,
        z_dim: int,  # Input latent (Z) dimensionality.
        c_dim: int,  # Conditioning label (C) dimensionality, 0 = no labels.
        w_dim: int,  # Intermediate latent (W) dimensionality.
        num_ws: int,  # Number of intermediate latents to output.
        num_layers: int = 2,  # Number of mapping layers.
        lr_multiplier: float = 0.01,  # Learning rate multiplier for the mapping layers.
        w_avg_beta: float = 0.998,  # Decay of the W moving average (update_emas=True).
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], lrelu=True, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: torch.Tensor,  # [N, z_dim]
        c: torch.Tensor | None = None,  # [N, c_dim]; ignored when c_dim == 0.
        truncation_psi: float = 1.0,  # 1 = no truncation, 0 = w_avg.
        truncation_cutoff: int | None = None,  # Truncate only layers < cutoff (None = all).
        update_emas: bool = False,  # Update w_avg with this batch (training only).
    ) -> torch.Tensor:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {tuple(z.shape)}"
        if c is not None and not isinstance(c, torch.Tensor):
            raise TypeError(f"c must be a tensor or None (StyleGAN3 mapping is (z, c, psi, cutoff)), got {c!r}")
        x = _normalize_2nd_moment(z.to(self.w_avg.dtype))  # NVIDIA: float32, the parameters' dtype
        if self.c_dim > 0:
            if c is None or c.shape != (z.shape[0], self.c_dim):
                raise ValueError(f"c must be [N, {self.c_dim}], got {None if c is None else tuple(c.shape)}")
            y = _normalize_2nd_moment(self.embed(c.to(self.w_avg.dtype)))
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        return self.truncate(ws, truncation_psi, truncation_cutoff) if truncation_psi != 1 else ws

    def truncate(
        self,
        ws: torch.Tensor,  # [N, num_ws, w_dim]
        truncation_psi: float,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """``w_avg.lerp(ws, psi)`` on layers < ``truncation_cutoff`` (all when None)."""
        cut = ws.shape[1] if truncation_cutoff is None else truncation_cutoff
        truncated = self.w_avg.to(ws.dtype).lerp(ws[:, :cut], truncation_psi)
        return torch.cat([truncated, ws[:, cut:]], dim=1)


class SynthesisInput(nn.Module):
    """Fourier features at the first layer's sampling rate, rotated / translated by an affine of ``ws[0]``."""

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (W) dimensionality.
        channels: int,  # Number of output channels (= frequencies).
        size: int,  # Output spatial size.
        sampling_rate: float,  # Output sampling rate.
        bandwidth: float,  # Output bandwidth (radius of the frequency disc).
    ):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        freqs = torch.randn(channels, 2)  # uniform-ish in a disc of radius `bandwidth`, as NVIDIA draws them
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0.0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3))  # user inverse transform w.r.t. the image
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand(channels) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t = self.affine(w)  # (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(1)
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        rot = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], 1).view(-1, 3, 3)
        shift = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], 1).view(-1, 3, 3)
        transforms = rot @ shift @ self.transform[None]  # rotate, then translate, then the user transform
        phases = self.phases[None] + (self.freqs[None] @ transforms[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = self.freqs[None] @ transforms[:, :2, :2]  # [N, C, 2]
        # dampen frequencies pushed out of band by the user transform
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        theta = torch.eye(2, 3, device=w.device, dtype=freqs.dtype)
        theta[0, 0] = theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grid = F.affine_grid(theta[None], [1, 1, self.size, self.size], align_corners=False)  # [1, H, W, 2]
        x = grid.view(1, -1, 2) @ freqs.transpose(1, 2)  # [N, H*W, C]
        x = torch.sin((x + phases[:, None]) * (np.pi * 2)) * amplitudes[:, None]
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.view(-1, self.size, self.size, self.channels).permute(0, 3, 1, 2)


def modulated_conv2d(
    x: torch.Tensor,  # [N, I, H, W]
    weight: torch.Tensor,  # [O, I, k, k]
    styles: torch.Tensor,  # [N, I]
    demodulate: bool,
    input_gain: torch.Tensor,  # [] scale of the input channels (magnitude_ema ** -0.5)
    bias: torch.Tensor | None,  # [O], added to the output (NVIDIA adds it first thing in the filtered lrelu)
    pad: tuple[int, int, int, int],  # (left, right, top, bottom) zero padding; negative crops
) -> torch.Tensor:
    """NVIDIA's fused modulated convolution (one grouped conv over the batch). With ``demodulate`` the weight is
    normalised per output channel and the styles by their RMS over the whole batch before modulation, exactly as
    NVIDIA does (only the 1e-8 of the demodulation makes that visible)."""
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    w = (w * input_gain).reshape(n * c_out, c_in, kh, kw)
    x = x.reshape(1, n * c_in, h, wd)
    left, right, top, bottom = pad
    padding = 0
    if left == right == top == bottom and left >= 0:
        padding = left
    else:
        x = F.pad(x, [left, right, top, bottom])
    b = None if bias is None else bias.to(x.dtype).repeat(n)
    x = F.conv2d(x, w.to(x.dtype), bias=b, padding=padding, groups=n)
    return x.view(n, c_out, *x.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU (or the 1x1 toRGB when ``is_torgb``).

    ``separable_filters``: run the separable low-pass filters as 1-D passes (see :func:`filtered_lrelu`); set for
    all layers with :meth:`StyleGAN3Generator.set_separable_filters`. Same outputs either way.
    """

    separable_filters: bool = False

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (W) dimensionality.
        is_torgb: bool,  # Is this the final ToRGB layer?
        is_critically_sampled: bool,  # Does this layer use critical sampling?
        in_channels: int,
        out_channels: int,
        in_size: int,  # Input spatial size.
        out_size: int,  # Output spatial size.
        in_sampling_rate: int,
        out_sampling_rate: int,
        in_cutoff: float,  # Input cutoff frequency (f_c).
        out_cutoff: float,  # Output cutoff frequency (f_c).
        in_half_width: float,  # Input transition band half-width (f_h).
        out_half_width: float,  # Output transition band half-width (f_h).
        conv_kernel: int = 3,  # Convolution kernel size (1 for toRGB).
        filter_size: int = 6,  # Low-pass filter taps per sample of the lower rate when resampling.
        lrelu_upsampling: int = 2,  # Relative sampling rate of the leaky ReLU (1 for toRGB).
        use_radial_filters: bool = False,  # Radially symmetric down filter (not on critically sampled layers).
        conv_clamp: float | None = 256,  # Clamp the output to [-X, +X], None = off.
        magnitude_ema_beta: float = 0.999,  # Decay of the input magnitude moving average (update_emas=True).
    ):
        super().__init__()
        self.w_dim, self.is_torgb, self.is_critically_sampled = w_dim, is_torgb, is_critically_sampled
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size, self.out_size = int(in_size), int(out_size)
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, self.conv_kernel, self.conv_kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)

        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        assert in_sampling_rate * self.up_factor == self.tmp_sampling_rate
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer("up_filter", design_lowpass_filter(
            self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate))
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        assert out_sampling_rate * self.down_factor == self.tmp_sampling_rate
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("down_filter", design_lowpass_filter(
            self.down_taps, out_cutoff, out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial))

        # NVIDIA's padding (w.r.t. the up-sampled image; symmetric interpretation, paper appendix C.3)
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        self.padding = [pad_lo, pad_total - pad_lo, pad_lo, pad_total - pad_lo]
        # Conv outputs the up-sampling never reads are not computed: crop them via the conv padding instead.
        size, k1 = self.in_size + self.conv_kernel - 1, self.conv_kernel - 1
        lo, hi = input_trim(size, self.up_factor, self.up_taps, pad_lo, pad_total - pad_lo)
        self.conv_pad = (k1 - lo, k1 - (size - 1 - hi)) * 2  # (left, right, top, bottom)
        p0, p1 = pad_lo + lo * self.up_factor, pad_total - pad_lo + (size - 1 - hi) * self.up_factor
        self.fl_padding = [p0, p1, p0, p1]

    def forward(
        self,
        x: torch.Tensor,  # [N, in_channels, in_size, in_size]
        w: torch.Tensor,  # [N, w_dim]
        update_emas: bool = False,  # Update magnitude_ema with this batch (training only).
    ) -> torch.Tensor:
        if update_emas:
            cur = x.detach().to(self.magnitude_ema.dtype).square().mean()
            self.magnitude_ema.copy_(cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel**2))
        x = modulated_conv2d(x, self.weight, styles, demodulate=not self.is_torgb,
                             input_gain=self.magnitude_ema.rsqrt(), bias=self.bias, pad=self.conv_pad)
        return filtered_lrelu(x, self.up_filter, self.down_filter, None, self.up_factor, self.down_factor,
                              self.fl_padding, gain=1 if self.is_torgb else SQRT2,
                              slope=1 if self.is_torgb else 0.2, clamp=self.conv_clamp,
                              separable=self.separable_filters)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_channels}x{self.in_size}, out={self.out_channels}x{self.out_size}, "
            f"up={self.up_factor}, down={self.down_factor}, radial={self.down_radial}, torgb={self.is_torgb}"
        )


def synthesis_schedule(
    img_resolution: int,
    img_channels: int = 3,
    channel_base: int = 32768,
    channel_max: int = 512,
    num_layers: int = 14,
    num_critical: int = 2,
    first_cutoff: float = 2,
    first_stopband: float = 2**2.1,
    last_stopband_rel: float = 2**0.3,
    margin_size: int = 10,
) -> dict[str, np.ndarray]:
    """NVIDIA's per-layer schedule (index 0 = the input, num_layers = toRGB): cutoffs, stopbands, sampling rates,
    transition half-widths, sizes and channels, as geometric progressions up to the last critically sampled
    layers."""
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates, half_widths=half_widths,
                sizes=sizes, channels=channels)


class SynthesisNetwork(nn.Module):
    """ws -> images: ``input`` then ``num_layers + 1`` layers named ``L{i}_{size}_{channels}``."""

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (W) dimensionality.
        img_resolution: int,  # Output image resolution.
        img_channels: int,  # Number of color channels.
        channel_base: int = 32768,  # Overall multiplier for the number of channels.
        channel_max: int = 512,  # Maximum number of channels in any layer.
        num_layers: int = 14,  # Total number of layers, excluding Fourier features and ToRGB.
        num_critical: int = 2,  # Number of critically sampled layers at the end.
        first_cutoff: float = 2,  # Cutoff frequency of the first layer (f_{c,0}).
        first_stopband: float = 2**2.1,  # Minimum stopband of the first layer (f_{t,0}).
        last_stopband_rel: float = 2**0.3,  # Minimum stopband of the last layer, relative to its cutoff.
        margin_size: int = 10,  # Number of additional pixels outside the image.
        output_scale: float = 0.25,  # Scale factor for the output image.
        num_fp16_res: int = 4,  # Accepted for compatibility; everything runs in float32.
        **layer_kwargs: Any,  # conv_kernel, filter_size, lrelu_upsampling, use_radial_filters, conv_clamp, ...
    ):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = num_layers + 2
        self.num_layers, self.num_critical = num_layers, num_critical
        self.margin_size, self.output_scale, self.num_fp16_res = margin_size, output_scale, num_fp16_res
        s = synthesis_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                               first_cutoff, first_stopband, last_stopband_rel, margin_size)
        sr, cut, hw, sizes, ch = s["sampling_rates"], s["cutoffs"], s["half_widths"], s["sizes"], s["channels"]
        self.input = SynthesisInput(w_dim, int(ch[0]), int(sizes[0]), sr[0], cut[0])
        self.layer_names: list[str] = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim, is_torgb=idx == num_layers, is_critically_sampled=idx >= num_layers - num_critical,
                in_channels=int(ch[prev]), out_channels=int(ch[idx]), in_size=int(sizes[prev]),
                out_size=int(sizes[idx]), in_sampling_rate=int(sr[prev]), out_sampling_rate=int(sr[idx]),
                in_cutoff=cut[prev], out_cutoff=cut[idx], in_half_width=hw[prev], out_half_width=hw[idx],
                **layer_kwargs)
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(
        self,
        ws: torch.Tensor,  # [N, num_ws, w_dim]
        noise_mode: str = "const",  # Accepted for interface compatibility; StyleGAN3 has no noise.
        update_emas: bool = False,  # Update the layers' magnitude_ema (training only).
        **ignored: Any,  # force_fp32, noise, noise_generator, ...: no effect here.
    ) -> torch.Tensor:
        """W+ -> images [N, img_channels, img_resolution, img_resolution]."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), (
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}"
        )
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        ws = ws.to(self.input.weight.dtype).unbind(dim=1)  # NVIDIA: float32, the parameters' dtype
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, update_emas=update_emas)
        return x * self.output_scale if self.output_scale != 1 else x


class StyleGAN3Generator(nn.Module):
    """NVIDIA's StyleGAN3 ``Generator`` (same constructor arguments, state-dict keys and outputs).

    ``mapping(z, c)`` gives ``ws``, ``synthesis(ws)`` images; calling the module does both.
    """

    def __init__(
        self,
        z_dim: int = 512,  # Input latent (Z) dimensionality.
        c_dim: int = 0,  # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim: int = 512,  # Intermediate latent (W) dimensionality.
        img_resolution: int = 1024,  # Output resolution.
        img_channels: int = 3,  # Number of output color channels.
        mapping_kwargs: dict[str, Any] | None = None,  # num_layers (2), lr_multiplier (0.01), w_avg_beta (0.998).
        channel_base: int = 32768,  # Overall channel multiplier (config R: 65536).
        channel_max: int = 512,  # Maximum number of channels (config R: 1024).
        num_layers: int = 14,  # Synthesis layers, excluding Fourier features and ToRGB.
        num_critical: int = 2,  # Number of critically sampled layers at the end.
        first_cutoff: float = 2,  # Cutoff frequency of the first layer.
        first_stopband: float = 2**2.1,  # Minimum stopband of the first layer.
        last_stopband_rel: float = 2**0.3,  # Minimum stopband of the last layer, relative to its cutoff.
        margin_size: int = 10,  # Number of additional pixels outside the image.
        output_scale: float = 0.25,  # Scale factor for the output image.
        num_fp16_res: int = 4,  # Accepted for compatibility; everything runs in float32.
        conv_kernel: int = 3,  # Convolution kernel size (config R: 1).
        filter_size: int = 6,  # Low-pass filter taps relative to the lower resolution when resampling.
        lrelu_upsampling: int = 2,  # Relative sampling rate of the leaky ReLU.
        use_radial_filters: bool = False,  # Radially symmetric down filters (config R: True).
        conv_clamp: float | None = 256,  # Clamp layer outputs to [-X, +X], None = off.
        magnitude_ema_beta: float = 0.999,  # Decay of the input magnitude moving averages.
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(
            w_dim, img_resolution, img_channels, channel_base=channel_base, channel_max=channel_max,
            num_layers=num_layers, num_critical=num_critical, first_cutoff=first_cutoff,
            first_stopband=first_stopband, last_stopband_rel=last_stopband_rel, margin_size=margin_size,
            output_scale=output_scale, num_fp16_res=num_fp16_res, conv_kernel=conv_kernel, filter_size=filter_size,
            lrelu_upsampling=lrelu_upsampling, use_radial_filters=use_radial_filters, conv_clamp=conv_clamp,
            magnitude_ema_beta=magnitude_ema_beta)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **(mapping_kwargs or {}))

    @property
    def w_avg(self) -> torch.Tensor:
        """The mapping network's running mean of W [w_dim] (truncation centre)."""
        return self.mapping.w_avg

    def truncate(
        self,
        ws: torch.Tensor,  # [N, num_ws, w_dim]
        truncation_psi: float,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """``w_avg + psi * (ws - w_avg)`` on layers < ``truncation_cutoff`` (NVIDIA's ``lerp``)."""
        return self.mapping.truncate(ws, truncation_psi, truncation_cutoff)

    def set_modconv(self, fused: bool = True) -> StyleGAN3Generator:
        """StyleGAN2's switch (:meth:`Generator.set_modconv`); StyleGAN3's modulated convs are always fused."""
        if not fused:
            raise ValueError("StyleGAN3Generator computes its modulated convolutions fused only (fused_modconv=true)")
        return self

    def set_separable_filters(self, separable: bool = True) -> StyleGAN3Generator:
        """Run separable low-pass filters as 1-D passes (True) or as one 2-D pass (False, the default, faster on
        CPU); same outputs. Returns ``self``."""
        for m in self.modules():
            if isinstance(m, SynthesisLayer):
                m.separable_filters = bool(separable)
        return self

    def forward(
        self,
        z: torch.Tensor,  # [N, z_dim]
        c: torch.Tensor | None = None,  # [N, c_dim] labels (ignored when c_dim == 0)
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        update_emas: bool = False,
        **synthesis_kwargs: Any,
    ) -> torch.Tensor:
        """z (+ c) -> images."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, update_emas=update_emas, **synthesis_kwargs)

    def extra_repr(self) -> str:
        return (
            f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, num_ws={self.num_ws}"
        )
