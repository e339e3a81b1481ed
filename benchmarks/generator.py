"""Generator forward and forward+backward-to-ws time (random config-f weights; or StyleGAN3 T / R).

    python -m benchmarks.generator                      # 1024 px on CUDA, 64 px on CPU
    python -m benchmarks.generator --resolution 1024 --batch-sizes 1 8 --repeats 20
    python -m benchmarks.generator --arch stylegan3-r --batch-sizes 8   # NVIDIA's FFHQ StyleGAN3-R widths

Prints ms per batch and per image and writes benchmarks/results/generator-<device>.json.
Not a test: timings depend on the machine. The plain fp32 path is what is timed.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import (
    device_name,
    fast_gpu_defaults,
    frozen_generator,
    peak_memory_gib,
    rel_error,
    reset_peak_memory,
    save_results,
    time_fn,
)
from inversion.inverter import AUTOCAST_DTYPES

# NVIDIA's train.py widths: T cbase 32768 / cmax 512; R doubles both, 1x1 convs and radial filters.
ARCHS = {"stylegan2": {}, "stylegan3-t": {"channel_base": 32768, "channel_max": 512},
         "stylegan3-r": {"channel_base": 65536, "channel_max": 1024, "conv_kernel": 1, "use_radial_filters": True}}
ARCHS_LABEL = {"stylegan2": "StyleGAN2 config-f", "stylegan3-t": "StyleGAN3-T", "stylegan3-r": "StyleGAN3-R"}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resolution", type=int, default=None, help="default: 1024 on CUDA, 64 on CPU")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=None, help="default: 20 on CUDA, 3 on CPU")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--unfused-modconv", action="store_true",
                   help="modulated convs as activation scaling + shared conv + demodulation (Generator.set_modconv)")
    p.add_argument("--autocast", choices=["bfloat16", "float16"], default=None, help="run under torch.autocast")
    p.add_argument("--arch", choices=list(ARCHS), default="stylegan2",
                   help="stylegan2 (config-f) or StyleGAN3 T / R with NVIDIA's FFHQ widths (plain PyTorch)")
    args = p.parse_args(argv)
    amp = AUTOCAST_DTYPES.get(args.autocast)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    res = args.resolution or (1024 if on_gpu else 64)
    repeats = args.repeats or (20 if on_gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)
    fast_gpu_defaults(device)

    if args.arch == "stylegan2":
        G = frozen_generator(res, 1.0, device)
    else:
        from inversion.models import StyleGAN3Generator

        G = StyleGAN3Generator(img_resolution=res, **ARCHS[args.arch]).eval().requires_grad_(False).to(device)
    G.set_modconv(not args.unfused_modconv)
    ctx = lambda: torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None)  # noqa: E731
    rows = []
    for batch in args.batch_sizes:
        ws = G.mapping(torch.randn(batch, G.z_dim, device=device)).detach()

        def fwd(ws=ws):
            with torch.no_grad(), ctx():
                G.synthesis(ws)

        def fwd_bwd(ws=ws):
            w = ws.clone().requires_grad_(True)
            with ctx():
                out = G.synthesis(w)
            out.float().square().mean().backward()

        guard = None
        if amp is not None or args.unfused_modconv:  # correctness guard: against the plain fused fp32 generator
            with torch.no_grad():
                with ctx():
                    fast = G.synthesis(ws).float()
                G.set_modconv(True)
                fwd_out = G.synthesis(ws)
                G.set_modconv(not args.unfused_modconv)
            guard = rel_error(fast, fwd_out)

        for name, fn in (("forward", fwd), ("forward+backward to ws", fwd_bwd)):
            reset_peak_memory(device)
            t = time_fn(fn, device, warmup=warmup, repeats=repeats)
            rows.append({
                "what": name, "arch": args.arch, "resolution": res, "batch": batch,
                "ms_per_batch": 1e3 * t["median_s"], "ms_per_image": 1e3 * t["median_s"] / batch,
                "peak_gib": peak_memory_gib(device), "rel_error_vs_fp32": guard,
                "fused_modconv": not args.unfused_modconv, "autocast": args.autocast, **t,
            })
    mode = " + ".join([*([f"autocast {args.autocast}"] if amp else []),
                       *(["unfused modconv"] if args.unfused_modconv else [])]) or "fp32"
    print(f"{ARCHS_LABEL[args.arch]} generator, {res} px, {mode}, random weights — {device_name(device)}")
    print(f"{'what':<26}{'batch':>6}{'ms/batch':>12}{'ms/image':>12}{'peak GiB':>10}{'rel err':>10}")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        err = "-" if r["rel_error_vs_fp32"] is None else f"{r['rel_error_vs_fp32']:.1e}"
        print(f"{r['what']:<26}{r['batch']:>6}{r['ms_per_batch']:>12.1f}{r['ms_per_image']:>12.1f}{peak:>10}{err:>10}")
    name = "generator" if mode == "fp32" else "generator-" + "".join(c if c.isalnum() else "_" for c in mode)
    name += "" if args.arch == "stylegan2" else f"-{args.arch}"
    path = save_results(name, device, rows)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
