"""Per-image optimization refinement speed (random config-f weights): steps/s and ms per image-step.

    python -m benchmarks.refine                          # 1024 px, batches 1 and 32 on CUDA; 64 px, 1 and 4 on CPU
    python -m benchmarks.refine --space w+noise --lpips-weights vgg16_features.pth --loss-size 256

Each timed call is ``refine(G, target, num_steps=--steps)`` (a full optimization: forward, backward, Adam step
and bookkeeping). Prints steps/s, ms per step and ms per image-step, and writes
benchmarks/results/refine-<device>.json. Not a test: timings depend on the machine.
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
from inversion.refine import refine


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resolution", type=int, default=None, help="default: 1024 on CUDA, 64 on CPU")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default: 1 32 on CUDA, 1 4 on CPU")
    p.add_argument("--space", default="w+", choices=["w", "w+", "w+noise"])
    p.add_argument("--steps", type=int, default=None, help="optimization steps per timed call (20 CUDA, 5 CPU)")
    p.add_argument("--loss-size", type=int, default=None, help="compare images at this size (default: full)")
    p.add_argument("--lpips-weights", default=None, help="torchvision VGG16 features.* weights: add LPIPS-vgg")
    p.add_argument("--lpips", action="store_true",
                   help="add LPIPS-vgg with a random VGG16 trunk (same cost as the real one: for timing only)")
    p.add_argument("--repeats", type=int, default=None, help="default: 3 on CUDA, 1 on CPU")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    res = args.resolution or (1024 if on_gpu else 64)
    batches = args.batch_sizes or ([1, 32] if on_gpu else [1, 4])
    steps = args.steps or (20 if on_gpu else 5)
    repeats = args.repeats or (3 if on_gpu else 1)
    fast_gpu_defaults(device)

    G = frozen_generator(res, 1.0, device)
    losses: dict = {"mse": (1.0, MSELoss())}
    if args.lpips_weights:
        losses["lpips"] = (1.0, LPIPSLoss.from_pretrained(args.lpips_weights, net="vgg").to(device))
    elif args.lpips:
        losses["lpips"] = (1.0, LPIPSLoss(net="vgg").to(device))
    loss_names = "+".join(losses)
    rows = []
    for batch in batches:
        with torch.no_grad():
            target = G.synthesis(G.mapping(torch.randn(batch, G.z_dim, device=device)), noise_mode="random")

        def run(target=target):
            refine(G, target, space=args.space, num_steps=steps, lr=0.01, losses=losses, loss_size=args.loss_size)

        reset_peak_memory(device)
        t = time_fn(run, device, warmup=1, repeats=repeats)
        step_s = t["median_s"] / steps
        rows.append({
            "space": args.space, "losses": loss_names, "resolution": res, "batch": batch, "steps": steps,
            "steps_per_s": 1 / step_s, "ms_per_step": 1e3 * step_s, "ms_per_image_step": 1e3 * step_s / batch,
            "peak_gib": peak_memory_gib(device), **t,
        })
    print(f"refine ({args.space}, {loss_names}), StyleGAN2 config-f {res} px, fp32, random weights — "
          f"{device_name(device)}")
    print(f"{'batch':>6}{'steps/s':>10}{'ms/step':>10}{'ms/img-step':>13}{'peak GiB':>10}")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        print(f"{r['batch']:>6}{r['steps_per_s']:>10.2f}{r['ms_per_step']:>10.1f}{r['ms_per_image_step']:>13.1f}"
              f"{peak:>10}")
    path = save_results("refine", device, rows)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
