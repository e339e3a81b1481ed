"""Batched pivotal tuning (PTI) speed (random config-f weights): ms per step and per image-step, delta storage.

    python -m benchmarks.tune                            # 1024 px on CUDA, 64 px on CPU; batches 1 and 8; full, rank 8
    python -m benchmarks.tune --lpips --ranks full 4 16  # + LPIPS-alex (random AlexNet trunk, timing only)
    python -m benchmarks.tune --lpips-weights alexnet_features.pth --loss-size 256

Each timed call is ``tune_generator(G, target, ws_pivot, num_steps=--steps, rank=..., threshold=None)`` (a full
tuning run: vmapped forward with per-image parameters, backward, Adam step and bookkeeping) on a random target and
pivots from the mapping of random z. Prints ms per step, ms per image-step, peak GPU memory and the per-image delta
storage, and writes benchmarks/results/tune-<device>.json. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import (
    device_name,
    fast_gpu_defaults,
    frozen_generator,
    peak_memory_gib,
    reset_peak_memory,
    save_results,
    time_fn,
)
from inversion.losses import LPIPSLoss, MSELoss
from inversion.refine import tune_generator


def _rank(s: str) -> int | None:
    return None if s == "full" else int(s)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resolution", type=int, default=None, help="default: 1024 on CUDA, 64 on CPU")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--steps", type=int, default=None, help="tuning steps per timed call (20 CUDA, 3 CPU)")
    p.add_argument("--ranks", type=_rank, nargs="+", default=[None, 8], help="'full' or an int r (default: full 8)")
    p.add_argument("--loss-size", type=int, default=None, help="compare images at this size (default: full)")
    p.add_argument("--lpips-weights", default=None, help="torchvision AlexNet features.* weights: add LPIPS-alex")
    p.add_argument("--lpips", action="store_true",
                   help="add LPIPS-alex with a random AlexNet trunk (same cost as the real one: for timing only)")
    p.add_argument("--repeats", type=int, default=None, help="default: 3 on CUDA, 1 on CPU")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    res = args.resolution or (1024 if on_gpu else 64)
    steps = args.steps or (20 if on_gpu else 3)
    repeats = args.repeats or (3 if on_gpu else 1)
    fast_gpu_defaults(device)

    G = frozen_generator(res, 1.0, device)
    losses: dict = {"mse": (1.0, MSELoss())}
    if args.lpips_weights:
        losses["lpips"] = (1.0, LPIPSLoss.from_pretrained(args.lpips_weights, net="alex").to(device))
    elif args.lpips:
        losses["lpips"] = (1.0, LPIPSLoss(net="alex").to(device))
    loss_names = "+".join(losses)
    rows = []
    for batch in args.batch_sizes:
        with torch.no_grad():
            ws_pivot = G.mapping(torch.randn(batch, G.z_dim, device=device))
        target = torch.rand(batch, 3, res, res, device=device) * 2 - 1
        for rank in args.ranks:
            out: dict = {}

            def run(target=target, ws_pivot=ws_pivot, rank=rank, out=out):
                out["r"] = tune_generator(G, target, ws_pivot, num_steps=steps, lr=3e-4, losses=losses, rank=rank,
                                          threshold=None, loss_size=args.loss_size)

            reset_peak_memory(device)
            t = time_fn(run, device, warmup=1, repeats=repeats)
            step_s = t["median_s"] / steps
            delta_mb = sum(d.numel() * 4 for d in out["r"].deltas.values()) / batch / 1e6
            rows.append({
                "losses": loss_names, "resolution": res, "batch": batch, "rank": "full" if rank is None else rank,
                "steps": steps, "ms_per_step": 1e3 * step_s, "ms_per_image_step": 1e3 * step_s / batch,
                "peak_gib": peak_memory_gib(device), "delta_mb_per_image": delta_mb, **t,
            })
            del out["r"]
    print(f"tune_generator ({loss_names}, {steps} steps), StyleGAN2 config-f {res} px, fp32, random weights — "
          f"{device_name(device)}")
    print(f"{'batch':>6}{'rank':>6}{'ms/step':>10}{'ms/img-step':>13}{'peak GiB':>10}{'delta MB/img':>14}")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        print(f"{r['batch']:>6}{r['rank']:>6}{r['ms_per_step']:>10.1f}{r['ms_per_image_step']:>13.1f}{peak:>10}"
              f"{r['delta_mb_per_image']:>14.1f}")
    path = save_results("tune", device, rows)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
