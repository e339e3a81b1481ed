"""An independent, deliberately literal re-implementation of NVIDIA's StyleGAN3 generator maths (test oracle).

Written from the logic of NVIDIA's ``training/networks_stylegan3.py`` and its reference ops
(``_filtered_lrelu_ref`` = bias, ``upfirdn2d`` up, leaky ReLU * gain, clamp, ``upfirdn2d`` down), sharing no code
with :mod:`inversion.models.stylegan3`: plain-Python schedule, per-pixel Fourier feature coordinates, one modulated
conv per sample, explicit zero insertion, explicit padding / cropping and full 2-D filters (1-D filters become outer
products). It reads a ``state_dict`` plus the generator kwargs; slow, for small test models only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEFAULTS = dict(channel_base=32768, channel_max=512, num_layers=14, num_critical=2, first_cutoff=2,
                first_stopband=2**2.1, last_stopband_rel=2**0.3, margin_size=10, output_scale=0.25,
                conv_kernel=3, filter_size=6, lrelu_upsampling=2, use_radial_filters=False, conv_clamp=256)


def _fc(sd: dict, prefix: str, x: torch.Tensor, lr: float = 1.0, act: bool = False) -> torch.Tensor:
    weight, bias = sd[prefix + ".weight"], sd[prefix + ".bias"]
    y = x @ (weight * (lr / math.sqrt(weight.shape[1]))).T + bias * lr
    return F.leaky_relu(y, 0.2) * math.sqrt(2) if act else y


def oracle_mapping(sd: dict, kw: dict, z: torch.Tensor, c: torch.Tensor | None = None, psi: float = 1.0,
                   cutoff: int | None = None) -> torch.Tensor:
    """ws [N, num_layers + 2, w_dim]."""
    mk = kw.get("mapping_kwargs") or {}
    lr, depth = mk.get("lr_multiplier", 0.01), mk.get("num_layers", 2)
    num_ws = kw.get("num_layers", 14) + 2
    x = z / torch.sqrt((z * z).mean(1, keepdim=True) + 1e-8)
    if kw.get("c_dim", 0) > 0:
        y = _fc(sd, "mapping.embed", c)
        x = torch.cat([x, y / torch.sqrt((y * y).mean(1, keepdim=True) + 1e-8)], 1)
    for i in range(depth):
        x = _fc(sd, f"mapping.fc{i}", x, lr=lr, act=True)
    rows = []
    for i in range(num_ws):
        truncate = psi != 1 and (cutoff is None or i < cutoff)
        rows.append(sd["mapping.w_avg"] + psi * (x - sd["mapping.w_avg"]) if truncate else x)
    return torch.stack(rows, 1)


def oracle_layers(kw: dict) -> list[dict]:
    """Per synthesis layer: channels, sizes, rates, filters' up/down factors and NVIDIA's padding (pure Python)."""
    p = dict(DEFAULTS, **{k: v for k, v in kw.items() if k in DEFAULTS})
    res, n = kw["img_resolution"], p["num_layers"]
    f_last, t_last = res / 2, res / 2 * p["last_stopband_rel"]
    info = []
    for i in range(n + 1):
        e = min(i / (n - p["num_critical"]), 1.0)
        cut = p["first_cutoff"] * (f_last / p["first_cutoff"]) ** e
        stop = p["first_stopband"] * (t_last / p["first_stopband"]) ** e
        rate = 2.0 ** math.ceil(math.log2(min(stop * 2, res)))
        size = res if i >= n - 1 else int(rate) + 2 * p["margin_size"]
        ch = kw["img_channels"] if i == n else int(round(min(p["channel_base"] / 2 / cut, p["channel_max"])))
        info.append(dict(cutoff=cut, rate=int(rate), size=size, channels=ch))
    layers = []
    for i in range(n + 1):
        a, b = info[max(i - 1, 0)], info[i]
        torgb = i == n
        k = 1 if torgb else p["conv_kernel"]
        tmp = max(a["rate"], b["rate"]) * (1 if torgb else p["lrelu_upsampling"])
        up, down = tmp // a["rate"], tmp // b["rate"]
        up_taps = p["filter_size"] * up if up > 1 and not torgb else 1
        down_taps = p["filter_size"] * down if down > 1 and not torgb else 1
        total = (b["size"] - 1) * down + 1 - (a["size"] + k - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2
        layers.append(dict(name=f"L{i}_{b['size']}_{b['channels']}", torgb=torgb, k=k, up=up, down=down,
                           pad=(lo, total - lo), out_size=b["size"]))
    return [dict(info[0], name="input")] + layers


def _fir(x: torch.Tensor, f: torch.Tensor | None) -> torch.Tensor:
    """Valid true convolution of [C, H, W] with a full 2-D filter (outer product for a 1-D one), per channel."""
    if f is None:
        return x
    f2 = torch.outer(f, f) if f.ndim == 1 else f
    c = x.shape[0]
    return F.conv2d(x[None], f2.flip([0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)[0]


def _pad_or_crop(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Zero-pad (positive) or crop (negative) both spatial axes of [C, H, W] by (lo, hi)."""
    c, h, w = x.shape
    out = torch.zeros(c, h + lo + hi, w + lo + hi, dtype=x.dtype)
    src = x[:, max(-lo, 0) : h - max(-hi, 0), max(-lo, 0) : w - max(-hi, 0)]
    out[:, max(lo, 0) : max(lo, 0) + src.shape[1], max(lo, 0) : max(lo, 0) + src.shape[2]] = src
    return out


def oracle_filtered_lrelu(x: torch.Tensor, fu, fd, bias, up, down, pad, gain, slope, clamp) -> torch.Tensor:
    """[C, H, W] -> bias, explicit zero insertion, pad / crop, 2-D FIR (gain up^2), lrelu * gain, clamp, 2-D FIR,
    keep every down-th sample."""
    x = x + bias[:, None, None]
    c, h, w = x.shape
    z = torch.zeros(c, h * up, w * up, dtype=x.dtype)
    z[:, ::up, ::up] = x
    z = _fir(_pad_or_crop(z, *pad), fu) * up**2
    z = torch.where(z >= 0, z, z * slope) * gain
    if clamp is not None:
        z = torch.minimum(torch.maximum(z, torch.tensor(-clamp)), torch.tensor(clamp))
    return _fir(z, fd)[:, ::down, ::down]


def _fourier_input(sd: dict, kw: dict, info: dict, w: torch.Tensor) -> torch.Tensor:
    t = _fc(sd, "synthesis.input.affine", w)
    size, rate, bw = info["size"], info["rate"], info["cutoff"]
    freqs0, phases0 = sd["synthesis.input.freqs"], sd["synthesis.input.phases"]
    weight = sd["synthesis.input.weight"]
    coords = ((torch.arange(size, dtype=torch.float64) + 0.5) * 2 / size - 1) * (0.5 * size / rate)
    gx, gy = coords[None, :].float(), coords[:, None].float()  # [1, W] and [H, 1]: column x, row y
    out = []
    for n in range(w.shape[0]):
        rc, rs, tx, ty = (t[n] / torch.sqrt(t[n, 0] ** 2 + t[n, 1] ** 2)).tolist()
        rot = torch.tensor([[rc, -rs, 0.0], [rs, rc, 0.0], [0.0, 0.0, 1.0]])
        shift = torch.tensor([[1.0, 0.0, -tx], [0.0, 1.0, -ty], [0.0, 0.0, 1.0]])
        m = rot @ shift @ sd["synthesis.input.transform"]
        phases = phases0 + freqs0 @ m[:2, 2]
        freqs = freqs0 @ m[:2, :2]
        amp = (1 - (freqs.norm(dim=1) - bw) / (rate / 2 - bw)).clamp(0, 1)
        feats = torch.stack([
            torch.sin(2 * math.pi * (freqs[ch, 0] * gx + freqs[ch, 1] * gy + phases[ch])) * amp[ch]
            for ch in range(freqs.shape[0])
        ])  # [C, H, W]
        out.append(torch.einsum("oc,chw->ohw", weight / math.sqrt(weight.shape[0]), feats))
    return torch.stack(out)


def oracle_synthesis(sd: dict, kw: dict, ws: torch.Tensor) -> torch.Tensor:
    """Images [N, img_channels, R, R] from ws [N, num_ws, w_dim]."""
    p = dict(DEFAULTS, **{k: v for k, v in kw.items() if k in DEFAULTS})
    info, *layers = oracle_layers(kw)
    x = _fourier_input(sd, kw, info, ws[:, 0])
    for i, layer in enumerate(layers):
        pre = f"synthesis.{layer['name']}."
        weight, torgb = sd[pre + "weight"], layer["torgb"]
        styles = _fc(sd, pre + "affine", ws[:, i + 1])
        if torgb:
            styles = styles / math.sqrt(weight.shape[1] * layer["k"] ** 2)
        else:  # NVIDIA's pre-normalisation: per output channel for the weight, over the whole batch for styles
            weight = weight / torch.sqrt((weight * weight).mean(dim=(1, 2, 3), keepdim=True))
            styles = styles / torch.sqrt((styles * styles).mean())
        gain_in = 1 / torch.sqrt(sd[pre + "magnitude_ema"])
        outs = []
        for n in range(x.shape[0]):
            wn = weight * styles[n][None, :, None, None]
            if not torgb:
                wn = wn / torch.sqrt((wn * wn).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            y = F.conv2d(x[n : n + 1], wn * gain_in, padding=layer["k"] - 1)[0]
            outs.append(oracle_filtered_lrelu(
                y, sd.get(pre + "up_filter"), sd.get(pre + "down_filter"), sd[pre + "bias"], layer["up"],
                layer["down"], layer["pad"], gain=1.0 if torgb else math.sqrt(2), slope=1.0 if torgb else 0.2,
                clamp=p["conv_clamp"]))
        x = torch.stack(outs)
        assert x.shape[-1] == layer["out_size"], (layer, x.shape)
    return x * p["output_scale"]
