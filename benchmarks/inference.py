"""Inversion latency: ms per image for pSp, e4e and ReStyle-5 (random weights, full-size encoders).

    python -m benchmarks.inference                          # 1024 px generator on CUDA, small on CPU
    python -m benchmarks.inference --batch-sizes 1 32 --resolution 1024

Times ``Inverter.invert`` (encoder + generator, plain fp32) with warm-up, device synchronisation and the
median of repeats; writes benchmarks/results/inference-<device>.json.
"""

from __future__ import annotations

import argparse
import copy

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
from inversion.build import build_inverter
from inversion.config import compose

METHODS = {  # name: the conf/experiment whose encoder (and inversion loop) is timed, composed like train.py
    "pSp": "psp_ffhq",
    "e4e": "e4e_ffhq",
    "ReStyle-pSp-5": "restyle_psp_ffhq",
}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resolution", type=int, default=None, help="generator px; default 1024 on CUDA, 64 on CPU")
    p.add_argument("--encoder-size", type=int, default=None, help="encoder input px; default 256 on CUDA, 64 on CPU")
    p.add_argument("--width", type=float, default=None, help="channel scale; default 1 (full) on CUDA, 0.125 on CPU")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default: 1 32 on CUDA, 1 2 on CPU")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--autocast", choices=["bfloat16", "float16"], default=None,
                   help="fast path (Inverter.set_fast_path)")
    p.add_argument("--channels-last", action="store_true", help="fast path: encoder in channels_last")
    p.add_argument("--compile", default=None, metavar="MODE", help="fast path: torch.compile mode")
    p.add_argument("--unfused-modconv", action="store_true",
                   help="generator modulated convs as activation scaling + shared conv + demodulation")
    args = p.parse_args(argv)
    fast = {"autocast": args.autocast, "channels_last": args.channels_last, "compile": args.compile,
            "fused_modconv": not args.unfused_modconv}
    use_fast = args.unfused_modconv or any(v for k, v in fast.items() if k != "fused_modconv")
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    res = args.resolution or (1024 if gpu else 64)
    enc_size = args.encoder_size or (256 if gpu else 64)
    width = args.width or (1.0 if gpu else 0.125)
    batches = args.batch_sizes or ([1, 32] if gpu else [1, 2])
    repeats = args.repeats or (20 if gpu else 2)
    warmup = args.warmup if args.warmup is not None else (3 if gpu else 1)
    fast_gpu_defaults(device)
    G = frozen_generator(res, width, device)
    channels = "[" + ",".join(str(max(8, int(c * width))) for c in (64, 128, 256, 512)) + "]"
    mode = "fp32" if not use_fast else ", ".join(f"{k}={v}" for k, v in fast.items()
                                                 if (v if k != "fused_modconv" else not v))
    result_name = "inference" if not use_fast else "inference-" + "".join(c if c.isalnum() else "_" for c in mode)
    rows = []
    for name, experiment in METHODS.items():
        if name not in args.methods:
            continue
        cfg = compose("train", [f"experiment={experiment}", f"encoder.net.input_size={enc_size}",
                                f"encoder.net.channels={channels}", "encoder.backbone.path=null"])  # random weights
        inv = build_inverter(cfg.encoder, G).eval().requires_grad_(False).to(device)
        guard = None
        if use_fast:  # correctness guard: the fast path against the plain fp32 path on the same input
            x = torch.rand(batches[0], 3, enc_size, enc_size, device=device) * 2 - 1
            with torch.no_grad():
                ref = inv.invert(x).images.float()
                fast_images = copy.deepcopy(inv).set_fast_path(**fast).invert(x).images.float()
            guard = rel_error(fast_images, ref)
            inv = copy.deepcopy(inv).set_fast_path(**fast)
        for batch in batches:
            x = torch.rand(batch, 3, enc_size, enc_size, device=device) * 2 - 1

            def run(x=x, inv=inv):
                with torch.no_grad():
                    inv.invert(x)

            reset_peak_memory(device)
            t = time_fn(run, device, warmup=warmup, repeats=repeats)
            rows.append({"method": name, "batch": batch, "resolution": res, "encoder_size": enc_size,
                         "width": width, "ms_per_image": 1e3 * t["median_s"] / batch, "fast_path": fast,
                         "rel_error_vs_fp32": guard,
                         "peak_gib": peak_memory_gib(device), **t})
        save_results(result_name, device, rows)  # after every method: a run cut short keeps what it measured
        del inv
    print(f"Inversion latency, generator {res} px, encoder {enc_size} px, width x{width}, {mode} — "
          f"{device_name(device)}")
    print(f"{'method':<16}{'batch':>6}{'ms/image':>12}{'peak GiB':>10}{'rel err vs fp32':>17}")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        err = "-" if r["rel_error_vs_fp32"] is None else f"{r['rel_error_vs_fp32']:.2e}"
        print(f"{r['method']:<16}{r['batch']:>6}{r['ms_per_image']:>12.1f}{peak:>10}{err:>17}")
    print(f"wrote {save_results(result_name, device, rows)}")
    return rows


if __name__ == "__main__":
    main()
