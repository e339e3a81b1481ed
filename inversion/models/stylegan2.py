"""StyleGAN2 generator in plain PyTorch (no compiled ops).

The module tree and ``state_dict`` keys are exactly those of rosinality's ``stylegan2-pytorch``
``Generator`` (the layout of ``stylegan2-ffhq-config-f.pt`` used by pSp / e4e / ReStyle), plus one
buffer ``w_avg``. The maths follows the same code: equalized learning rate, mapping lr multiplier 0.01,
modulated / demodulated 3x3 convolutions (``rsqrt(sum w^2 + 1e-8)``), transposed-conv up-sampling
followed by a [1, 3, 3, 1] FIR blur, per-layer noise with a learned strength, bias + leaky ReLU(0.2)
with gain sqrt(2), and skip toRGB outputs up-sampled with the same FIR filter. ``conv_clamp`` adds
stylegan2-ada's activation clamp (used when loading ada pickles); rosinality files have none.

Shapes: ``z`` [N, z_dim]; ``w`` [N, w_dim]; ``ws`` [N, num_ws, w_dim]; images [N, 3, R, R], nominally in
[-1, 1] (not clamped, like the official generators).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Generator",
    "rosinality_channels",
    "upfirdn2d",
    "mix_styles",
]

SQRT2 = math.sqrt(2.0)


def rosinality_channels(
    img_resolution: int,
    channel_multiplier: int = 2,
    channel_max: int = 512,
) -> dict[int, int]:
    """Feature channels per resolution, as in rosinality's ``Generator.channels`` (capped at ``channel_max``)."""
    base = {4: 512, 8: 512, 16: 512, 32: 512}
    for res, width in ((64, 256), (128, 128), (256, 64), (512, 32), (1024, 16)):
        base[res] = width * channel_multiplier
    out = {}
    res = 4
    while res <= img_resolution:
        if res not in base:
            raise ValueError(f"unsupported resolution {res}: rosinality's table stops at 1024")
        out[res] = max(1, min(channel_max, base[res]))
        res *= 2
    return out


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """Separable FIR kernel from a 1-D tap list, normalised to sum 1."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(
    x: torch.Tensor,  # [N, C, H, W]
    kernel: torch.Tensor,  # [kh, kw]
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Up-sample by zero insertion, pad (negative crops), FIR filter, down-sample — rosinality's semantics.

    ``pad`` is (before, after), applied to both spatial axes. The kernel is flipped (true convolution).
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    p0, p1 = pad
    conv_pad = 0
    if p0 == p1 and p0 >= 0:  # the convolution pads (no padded copy of x: a full pass over memory saved)
        conv_pad = p0
    else:
        x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
        if p0 < 0 or p1 < 0:
            x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, padding=conv_pad, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def mix_styles(
    ws_a: torch.Tensor,  # [N, num_ws, w_dim]
    ws_b: torch.Tensor,  # [N, num_ws, w_dim]
    crossover: int,  # layers < crossover come from ws_a, the rest from ws_b
) -> torch.Tensor:
    """Style mixing: the first ``crossover`` layers from ``ws_a``, the remaining ones from ``ws_b``."""
    assert ws_a.shape == ws_b.shape and ws_a.ndim == 3, (ws_a.shape, ws_b.shape)
    if not 0 <= crossover <= ws_a.shape[1]:
        raise ValueError(f"crossover must be in [0, {ws_a.shape[1]}], got {crossover}")
    return torch.cat([ws_a[:, :crossover], ws_b[:, crossover:]], dim=1)


class PixelNorm(nn.Module):
    """Normalise each vector to unit second moment (eps 1e-8)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class FusedLeakyReLU(nn.Module):
    """The parameters of rosinality's bias + leaky ReLU(0.2) + gain sqrt(2) (stylegan2-ada's ``bias_act``): the
    bias (key ``activate.bias``) and the optional clamp. :class:`StyledConv` computes the function, with the gain
    folded into its weights."""

    def __init__(self, channels: int, clamp: float | None = None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.clamp = clamp


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate (weights stored as N(0, 1/lr_mul))."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return F.leaky_relu(out + self.bias * self.lr_mul, 0.2) * SQRT2
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class Blur(nn.Module):
    """FIR filter with a fixed kernel buffer (key ``blur.kernel``)."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR up-sampling of the RGB skip path (key ``upsample.kernel``)."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Per-sample modulated convolution.

    ``fused=True`` (default, rosinality's formulation): the per-sample weights are built and applied as one grouped
    convolution over the batch. ``fused=False`` (NVlabs' ``fused_modconv=False``): the input is scaled by the styles,
    convolved with the shared weight, and the output scaled by the demodulation coefficients -- the same maths
    (tested equal), a different speed profile. Switch all layers with :meth:`Generator.set_modconv`.
    """

    fused: bool = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(w_dim, in_channels, bias_init=1.0)

    def forward(
        self,
        x: torch.Tensor,  # [N, in_channels, H, W]
        w: torch.Tensor,  # [N, w_dim]
        gain: float = 1.0,  # Output scale, applied to the weights (free; StyledConv folds its activation gain here).
    ) -> torch.Tensor:
        n, c, h, wd = x.shape
        k = self.kernel_size
        if not self.fused:
            return self._forward_scaled(x, w, gain)
        styles = self.modulation(w)  # [N, in]
        base = self.scale * self.weight[0]  # [out, in, k, k], shared by the batch
        coef = styles[:, None, :]  # [N, 1 or out, in]: the per-sample factor of each (out, in) kernel
        if self.demodulate:
            demod = self._demodulation(base, styles)
            coef = coef * (demod if gain == 1.0 else demod * gain)[:, :, None]
        elif gain != 1.0:
            coef = coef * gain
        # the per-sample weights are built once, in the layout the convolution takes (a broadcast product of the
        # shared kernels and an [N, out, in] factor), not scaled, squared, summed and transposed at full size
        x = x.reshape(1, n * c, h, wd)
        if self.upsample:
            # contiguous factors give a contiguous product, so the reshape below is a view, not a copy
            weight = base.transpose(0, 1).contiguous()[None] * coef.transpose(1, 2).contiguous()[..., None, None]
            weight = weight.reshape(n * c, self.out_channels, k, k).to(x.dtype)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=n)
            return self.blur(out.view(n, self.out_channels, *out.shape[2:]))
        weight = (base[None] * coef[..., None, None]).reshape(n * self.out_channels, c, k, k).to(x.dtype)
        out = F.conv2d(x, weight, padding=self.padding, groups=n)
        return out.view(n, self.out_channels, *out.shape[2:])

    @staticmethod
    def _demodulation(base: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """[N, out]: rsqrt(sum_{in,k,k} (base * style)^2 + 1e-8) = rsqrt(sum_in style^2 sum_{k,k} base^2 + 1e-8),
        from the [out, in] kernel energies and the styles alone."""
        return torch.rsqrt((base.pow(2).sum([2, 3])[None] * styles.pow(2)[:, None, :]).sum(2) + 1e-8)

    def _forward_scaled(self, x: torch.Tensor, w: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """``fused=False``: scale activations, convolve with the shared weight, scale by the demodulation."""
        n, c = x.shape[:2]
        styles = self.modulation(w)  # [N, in]
        weight = self.scale * self.weight[0]  # [out, in, k, k], shared by the batch
        x = x * styles.view(n, c, 1, 1).to(x.dtype)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), padding=0, stride=2)
        else:
            out = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            out = out * (self._demodulation(weight, styles) * gain).view(n, self.out_channels, 1, 1).to(out.dtype)
        elif gain != 1.0:
            out = out * gain
        return self.blur(out) if self.upsample else out


class NoiseInjection(nn.Module):
    """The learned noise strength of a layer (key ``noise.weight``); :class:`StyledConv` adds ``weight * noise``."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class StyledConv(nn.Module):
    """Modulated conv, noise, bias + activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, w_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels, clamp=conv_clamp)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """``leaky_relu(conv(x) + strength * noise + bias, 0.2) * sqrt(2)`` (then the clamp, if any), computed as
        ``leaky_relu(sqrt(2) * conv(x) + shift)`` with ``shift = sqrt(2) * (bias + strength * noise)``: the leaky
        ReLU is positively homogeneous, so the gain goes into the modulated weights and the small shift. One add
        and one activation pass over the output instead of four passes (noise, bias, activation, gain)."""
        out = self.conv(x, w, gain=SQRT2)
        shift = self.activate.bias.view(1, -1, 1, 1) * SQRT2  # [1, C, 1, 1]
        if noise is not None:  # [1, C, H, W] with the stored noise: small next to the [N, C, H, W] output
            shift = torch.addcmul(shift, self.noise.weight * SQRT2, noise)
        out = F.leaky_relu(out + shift.to(out.dtype), 0.2)
        clamp = self.activate.clamp
        return out if clamp is None else out.clamp(-clamp, clamp)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB, plus the up-sampled skip image."""

    def __init__(
        self,
        in_channels: int,
        w_dim: int,
        upsample: bool = True,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, 3, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias.to(x.dtype)
        if self.conv_clamp is not None:
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    """The learned 4x4 constant the synthesis starts from (key ``input.input``)."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class Generator(nn.Module):
    """StyleGAN2 generator (config-f layout) with rosinality's state-dict keys and a ``w_avg`` buffer.

    Use ``mapping(z)`` for ``ws``, ``synthesis(ws)`` for images, or call the module on ``z``.
    """

    c_dim: int = 0  # No labels (the conditional generator is stylegan2_cond.ConditionalGenerator).

    def __init__(
        self,
        *,
        z_dim: int = 512,  # Input latent (Z) dimensionality.
        w_dim: int = 512,  # Intermediate latent (W) dimensionality.
        img_resolution: int = 1024,  # Output resolution, a power of two in [8, 1024].
        n_mlp: int = 8,  # Number of fully connected layers in the mapping network.
        channel_multiplier: int = 2,  # rosinality's width multiplier for >= 64 px (2 = config-f).
        channel_max: int = 512,  # Cap on feature channels (use e.g. 16-32 for tiny test models).
        channels: dict[int, int] | None = None,  # Explicit {resolution: channels}; overrides the two above.
        lr_mlp: float = 0.01,  # Learning-rate multiplier of the mapping network.
        blur_kernel: Sequence[float] = (1, 3, 3, 1),  # FIR taps for up-sampling.
        conv_clamp: float | None = None,  # Clamp activations to +-conv_clamp (stylegan2-ada), None = off.
    ):
        super().__init__()
        log_size = int(math.log2(img_resolution))
        if 2**log_size != img_resolution or not 8 <= img_resolution <= 1024:
            raise ValueError(f"img_resolution must be a power of two in [8, 1024], got {img_resolution}")
        if channels is None:
            channels = rosinality_channels(img_resolution, channel_multiplier, channel_max)
        channels = {int(k): int(v) for k, v in channels.items()}
        missing = [2**i for i in range(2, log_size + 1) if 2**i not in channels]
        if missing:
            raise ValueError(f"channels is missing resolutions {missing}")
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.n_mlp = n_mlp
        self.channels = channels
        self.conv_clamp = conv_clamp
        self.log_size = log_size
        self.num_ws = log_size * 2 - 2
        self.num_layers = (log_size - 2) * 2 + 1  # conv layers, one noise input each

        layers: list[nn.Module] = [PixelNorm()]
        for i in range(n_mlp):
            layers.append(EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mlp, activation=True))
        self.style = nn.Sequential(*layers)

        kw = dict(blur_kernel=blur_kernel, conv_clamp=conv_clamp)
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], 3, w_dim, **kw)
        self.to_rgb1 = ToRGB(channels[4], w_dim, upsample=False, **kw)

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))
        in_ch = channels[4]
        for i in range(3, log_size + 1):
            out_ch = channels[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, w_dim, upsample=True, **kw))
            self.convs.append(StyledConv(out_ch, out_ch, 3, w_dim, **kw))
            self.to_rgbs.append(ToRGB(out_ch, w_dim, **kw))
            in_ch = out_ch
        self.register_buffer("w_avg", torch.zeros(w_dim))

    # ------------------------------------------------------------------ mapping
    def mapping(
        self,
        z: torch.Tensor,  # [N, z_dim]
        truncation_psi: float = 1.0,  # 1 = no truncation, 0 = w_avg.
        truncation_cutoff: int | None = None,  # Truncate only layers < cutoff (None = all).
    ) -> torch.Tensor:
        """Z -> W, broadcast to ``ws`` [N, num_ws, w_dim], with optional truncation toward ``w_avg``."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {tuple(z.shape)}"
        w = self.style(z)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            return self.truncate(ws, truncation_psi, truncation_cutoff)
        return ws

    def truncate(
        self,
        ws: torch.Tensor,  # [N, num_ws, w_dim]
        truncation_psi: float,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """``w_avg + psi * (ws - w_avg)`` on layers < ``truncation_cutoff``."""
        w_avg = self.w_avg.to(ws.dtype)
        truncated = w_avg + truncation_psi * (ws - w_avg)
        if truncation_cutoff is None:
            return truncated
        return torch.cat([truncated[:, :truncation_cutoff], ws[:, truncation_cutoff:]], dim=1)

    @torch.no_grad()
    def compute_w_avg(self, num_samples: int = 10_000, seed: int = 0, batch_size: int = 2_000) -> torch.Tensor:
        """Estimate the mean W from ``num_samples`` seeded z draws and store it in ``w_avg``."""
        gen = torch.Generator().manual_seed(seed)
        total = torch.zeros(self.w_dim, dtype=torch.float64)
        done = 0
        while done < num_samples:
            b = min(batch_size, num_samples - done)
            z = torch.randn(b, self.z_dim, generator=gen).to(self.w_avg.device)
            total += self.style(z).double().sum(0).cpu()
            done += b
        self.w_avg.copy_((total / num_samples).to(self.w_avg))
        return self.w_avg

    # ------------------------------------------------------------------ noise
    def set_modconv(self, fused: bool = True) -> Generator:
        """Compute every modulated convolution fused (one grouped conv, the default) or not (activation scaling +
        shared-weight conv + demodulation; see :class:`ModulatedConv2d`). Same outputs; returns ``self``."""
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.fused = bool(fused)
        return self

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        """Shapes of the per-layer noise inputs, in layer order."""
        return [tuple(getattr(self.noises, f"noise_{i}").shape) for i in range(self.num_layers)]

    def make_noise(
        self,
        batch_size: int = 1,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,  # None: the default dtype.
    ) -> list[torch.Tensor]:
        """Fresh N(0, 1) noise maps [batch_size, 1, r, r] for every layer, drawn in layer order. A ``generator`` on
        ``device`` draws there directly (no host copy); a CPU generator with another device draws on the CPU."""
        device = torch.device(device if device is not None else self.w_avg.device)
        on_device = generator is None or generator.device.type == device.type
        return [
            torch.randn(batch_size, 1, r, c, generator=generator, device=device if on_device else "cpu",
                        dtype=dtype).to(device)
            for _, _, r, c in self.noise_shapes()
        ]

    def const_noise(self) -> list[torch.Tensor]:
        """The generator's stored noise buffers (``noises.noise_i``), used with ``noise_mode='const'``."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    # ------------------------------------------------------------------ synthesis
    def synthesis(
        self,
        ws: torch.Tensor,  # [N, num_ws, w_dim]
        noise_mode: str = "const",  # 'const' (stored buffers), 'random' (fresh draw), 'none' (zero noise).
        noise: Sequence[torch.Tensor] | None = None,  # Explicit per-layer noise; overrides noise_mode.
        noise_generator: torch.Generator | None = None,  # 'random': draw from this generator (reproducible).
    ) -> torch.Tensor:
        """W+ -> images [N, 3, img_resolution, img_resolution]."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), (
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}"
        )
        n = ws.shape[0]
        if noise is None:
            if noise_mode == "const":
                noise = self.const_noise()
            elif noise_mode == "random":
                noise = self.make_noise(n, device=ws.device, generator=noise_generator, dtype=ws.dtype)
            elif noise_mode == "none":
                noise = [None] * self.num_layers
            else:
                raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        elif len(noise) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} noise maps, got {len(noise)}")

        x = self.input(n).to(ws.dtype)
        x = self.conv1(x, ws[:, 0], noise[0])
        skip = self.to_rgb1(x, ws[:, 1])
        i = 1
        for conv_up, conv, noise_up, noise_same, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            x = conv_up(x, ws[:, i], noise_up)
            x = conv(x, ws[:, i + 1], noise_same)
            skip = to_rgb(x, ws[:, i + 2], skip)
            i += 2
        assert skip.shape[1:] == (3, self.img_resolution, self.img_resolution), tuple(skip.shape)
        return skip

    def forward(
        self,
        z: torch.Tensor,  # [N, z_dim]
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """Z -> images."""
        return self.synthesis(self.mapping(z, truncation_psi=truncation_psi), noise_mode=noise_mode)

    def extra_repr(self) -> str:
        return (
            f"z_dim={self.z_dim}, w_dim={self.w_dim}, img_resolution={self.img_resolution}, "
            f"num_ws={self.num_ws}, channels={self.channels}, conv_clamp={self.conv_clamp}"
        )
