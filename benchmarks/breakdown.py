"""Where a training step's time goes: each part timed alone, then torch.profiler's operators by kind.

    python -m benchmarks.breakdown                       # CUDA: 1024 px generator, batch 8, full-size nets
    python -m benchmarks.breakdown --method ReStyle-pSp-5 --autocast bfloat16 --unfused-modconv
    python -m benchmarks.breakdown --device cpu          # slimmed models at 64 px (so it never rots)

The step is train_step.py's (the module train.py builds: encoder + frozen generator, L2 + LPIPS-alex + ArcFace ID,
Ranger), run without Lightning. Part 1 times, alone (warm-up, device synchronised, median of repeats): the encoder
forward + backward to its weights; the generator forward + backward to ``ws`` (and, for reference, its forward
without gradients); each image loss (resize to the loss size + the loss) forward + backward to the reconstruction;
the optimizer step; then the whole step. Each part's time x its calls per step (ReStyle: 5 iterations) is set
against the whole step. Part 2 records ``--profile-steps`` whole steps with torch.profiler and sums the operators'
self device time (self CPU time on CPU) by kind (convolution, FIR filter = depthwise 4x4 convolution, matrix
product, normalisation / pooling / resize, reduction, copy / layout, elementwise / other) and by phase (forward,
backward, optimizer), with the top operators. Kernel time far below the step's wall time means the step waits on
the host (launch overhead): the case for CUDA graphs / torch.compile. Writes
benchmarks/results/breakdown[-<fast path>]-<device>.json.
"""

from __future__ import annotations

import argparse
import contextlib
from collections import defaultdict
from collections.abc import Callable

import torch

from benchmarks.common import device_name, frozen_generator, save_results, sync, time_fn
from benchmarks.train_step import add_step_arguments, build_module, fast_path_label, step_sizes
from inversion.imageio import resize_images
from inversion.inverter import AUTOCAST_DTYPES

METHODS = ("pSp", "ReStyle-pSp-5")  # InversionModule steps (e4e's adds a discriminator step Lightning runs)
PHASES = ("forward", "backward", "optimizer")
KINDS = ("convolution", "FIR filter (depthwise 4x4 conv)", "matrix product", "normalisation / pooling / resize",
         "reduction", "copy / layout", "elementwise / other")
OPTIMIZER_SCOPE = "benchmark::optimizer_step"


def op_kind(name: str, shapes: list | None = None) -> str:
    """The kind of an operator, from its name (and, for convolutions, its input shapes: the generator's FIR
    filter is the only depthwise 4x4 convolution, weight [C, 1, 4, 4])."""
    n = name.lower().removeprefix("aten::")
    if "conv" in n:
        for s in shapes or []:
            if isinstance(s, (list, tuple)) and len(s) == 4 and s[1] == 1 and s[0] > 1 and tuple(s[2:]) == (4, 4):
                return KINDS[1]
        return KINDS[0]
    if n in {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addmv", "mv", "_scaled_mm"}:
        return KINDS[2]
    if any(k in n for k in ("norm", "pool", "upsample", "interpolate")):
        return KINDS[3]
    if any(k in n for k in ("sum", "mean", "amax", "amin", "max", "min", "var", "std", "prod", "cumsum")):
        return KINDS[4]
    if any(k in n for k in ("copy", "cat", "pad", "contiguous", "clone", "flip", "index", "stack", "fill", "zero",
                            "_to_", "slice_backward", "select_backward", "as_strided_scatter")):
        return KINDS[5]
    return KINDS[6]


def _phase(evt) -> str:
    p = evt.cpu_parent
    while p is not None:
        if p.name == OPTIMIZER_SCOPE or p.name.startswith("Optimizer.step"):
            return "optimizer"
        if p.name.startswith("autograd::engine::evaluate_function"):
            return "backward"
        p = p.cpu_parent
    return "forward"


def _self_us(evt, gpu: bool) -> float:
    if gpu:
        return float(getattr(evt, "self_device_time_total", None) or getattr(evt, "self_cuda_time_total", 0) or 0)
    return float(evt.self_cpu_time_total)


def summarize_profile(events, *, gpu: bool, steps: int, top: int = 20) -> dict:
    """Self time per step (ms) of the profiled operators, by kind x phase and per operator (top ``top``)."""
    by_kind: dict[str, dict[str, float]] = {k: dict.fromkeys(PHASES, 0.0) for k in KINDS}
    by_op: dict[tuple[str, str], dict] = defaultdict(lambda: {"ms_per_step": 0.0, "calls_per_step": 0.0})
    for evt in events:
        if str(getattr(evt, "device_type", "CPU")).split(".")[-1] != "CPU" or getattr(evt, "is_user_annotation",
                                                                                     False):
            continue
        if evt.name.startswith(("ProfilerStep", "benchmark::", "Optimizer.", "autograd::engine::")):
            continue  # scopes, not operators: their time is their children's
        us = _self_us(evt, gpu)
        kind = op_kind(evt.name, getattr(evt, "input_shapes", None))
        by_kind[kind][_phase(evt)] += us / 1e3 / steps
        row = by_op[(evt.name, kind)]
        row["ms_per_step"] += us / 1e3 / steps
        row["calls_per_step"] += 1 / steps
    total = sum(sum(v.values()) for v in by_kind.values())
    ops = sorted(({"op": name, "kind": kind, **v} for (name, kind), v in by_op.items()),
                 key=lambda r: -r["ms_per_step"])
    return {"clock": "device (kernel) time" if gpu else "CPU time", "total_ms_per_step": total,
            "by_kind": {k: {**v, "total": sum(v.values())} for k, v in by_kind.items()}, "top_ops": ops[:top]}


def step_parts(
    module,  # An InversionModule (train_step.build_module).
    x: torch.Tensor,  # Encoder-size input images [N, 3, S, S].
    ws: torch.Tensor,  # Latents [N, num_ws, w_dim] the generator part starts from.
    images: torch.Tensor,  # Generator-size reconstructions [N, 3, R, R] the loss parts start from.
) -> list[tuple[str, Callable[[], torch.Tensor], int]]:
    """The parts of a training step as (key, forward, calls per step): each ``forward()`` returns the tensor whose
    backward is the part's backward (encoder -> its weights, generator -> ``ws``, each image loss, with its resize,
    -> the reconstruction). ReStyle runs each part once per iteration. Shared by this script (timed) and
    roofline.py (counted)."""
    inv, calls = module.inverter, module.inverter.num_iters
    enc, G = inv.encoder, inv.generator
    enc_in = x
    if inv.residual:
        enc_in = torch.cat([x, inv.avg_image(x.dtype, x.device).expand(x.shape[0], -1, -1, -1)], 1)
    if inv.channels_last:
        enc_in = enc_in.contiguous(memory_format=torch.channels_last)
    target = resize_images(x, module.loss_size, module.loss_resize_mode)

    def loss_forward(name: str) -> Callable[[], torch.Tensor]:
        weight, loss_module = module.loss_spec[name][0], module.loss_terms[name]
        return lambda: weight * loss_module(
            resize_images(images.clone().requires_grad_(True), module.loss_size, module.loss_resize_mode), target)

    return [("encoder", lambda: enc(enc_in), calls),
            ("generator", lambda: G.synthesis(ws.clone().requires_grad_(True)), calls),
            *[(f"loss '{k}'", loss_forward(k), calls) for k, (_, kind) in module.loss_spec.items()
              if kind == "images"]]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(p)
    p.add_argument("--method", default="pSp", choices=METHODS)
    p.add_argument("--profile-steps", type=int, default=None, help="whole steps recorded; default 3 (CUDA) / 1")
    p.add_argument("--top", type=int, default=15, help="operators listed")
    args = p.parse_args(argv)
    device, gpu, res, batch, width, enc_size, repeats, warmup = step_sizes(args)
    profile_steps = args.profile_steps or (3 if gpu else 1)
    amp = AUTOCAST_DTYPES.get(args.autocast)
    G = frozen_generator(res, width, device)
    module = build_module(args.method, G, device=device, width=width, enc_size=enc_size).train()
    inv = module.inverter
    module.set_fast_path(channels_last=args.channels_last, compile=args.compile,
                         fused_modconv=not args.unfused_modconv)
    opt = module.configure_optimizers()
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 3, enc_size, enc_size, generator=gen) * 2 - 1).to(device)
    target = {"image": x}
    ws0 = (inv.latent_avg + 0.1 * torch.randn(batch, G.num_ws, G.w_dim, generator=gen).to(device)).detach()
    with torch.no_grad():
        images0 = G.synthesis(ws0)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None else contextlib.nullcontext

    def forward_backward(forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run():
            with autocast():
                out = forward()
            out.float().sum().backward()
            opt.zero_grad(set_to_none=True)  # the encoder's gradients: no accumulation into the next call
        return run

    def generator_forward():
        with torch.no_grad(), autocast():
            G.synthesis(ws0)

    params = [q for group in opt.param_groups for q in group["params"]]

    def optimizer_part():
        for q in params:  # a fixed, small gradient: the step's cost does not depend on its values
            if q.grad is None:
                q.grad = torch.full_like(q, 1e-6)
        with torch.profiler.record_function(OPTIMIZER_SCOPE):
            opt.step()

    def full_step():  # as the module's step: each ReStyle iteration's loss back-propagated before the next one
        opt.zero_grad(set_to_none=True)
        loss_target = resize_images(x, module.loss_size, module.loss_resize_mode)
        for inv_step in inv.iterate(x):
            with autocast():
                total, _ = module.step_losses(inv_step, loss_target, target)
            total.backward()
        with torch.profiler.record_function(OPTIMIZER_SCOPE):
            opt.step()

    labels = {"encoder": "encoder forward + backward", "generator": "generator forward + backward to ws"}
    parts = [(labels.get(key, f"{key} (resize + loss) forward + backward"), forward_backward(forward), calls)
             for key, forward, calls in step_parts(module, x, ws0, images0)]
    parts.append(("optimizer step", optimizer_part, 1))
    rows = []
    for what, fn, calls in parts:
        t = time_fn(fn, device, warmup=warmup, repeats=repeats)
        rows.append({"part": what, "ms_per_call": 1e3 * t["median_s"], "calls_per_step": calls,
                     "ms_per_step": 1e3 * t["median_s"] * calls, **t})
    opt.zero_grad(set_to_none=True)
    ref = time_fn(generator_forward, device, warmup=warmup, repeats=repeats)
    step = time_fn(full_step, device, warmup=warmup, repeats=repeats)
    step_ms = 1e3 * step["median_s"]
    parts_ms = sum(r["ms_per_step"] for r in rows)

    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if gpu else [])
    sync(device)
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        for _ in range(profile_steps):
            full_step()
        sync(device)
    prof_summary = summarize_profile(prof.events(), gpu=gpu, steps=profile_steps, top=args.top)

    mode = fast_path_label(args)
    print(f"\n== {args.method} training step, parts timed alone — generator {res} px, batch {batch}, width x{width}, "
          f"{mode} — {device_name(device)}")
    print(f"{'part':<52}{'ms/call':>10}{'calls':>7}{'ms/step':>10}{'share':>8}")
    for r in rows:
        print(f"{r['part']:<52}{r['ms_per_call']:>10.2f}{r['calls_per_step']:>7}{r['ms_per_step']:>10.2f}"
              f"{r['ms_per_step'] / step_ms:>8.0%}")
    print(f"{'sum of the parts':<52}{'':>17}{parts_ms:>10.2f}{parts_ms / step_ms:>8.0%}")
    print(f"{'whole step (no Lightning)':<52}{'':>17}{step_ms:>10.2f}{1:>8.0%}")
    print(f"{'(generator forward without gradients)':<52}{1e3 * ref['median_s']:>10.2f}")
    clock = prof_summary["clock"]
    busy = prof_summary["total_ms_per_step"]
    print(f"\n== torch.profiler, {profile_steps} whole steps: self {clock} per step, ms "
          f"(total {busy:.2f} = {busy / step_ms:.0%} of the step's wall time)")
    print(f"{'kind':<36}" + "".join(f"{ph:>11}" for ph in PHASES) + f"{'total':>11}{'share':>8}")
    for kind, v in sorted(prof_summary["by_kind"].items(), key=lambda kv: -kv[1]["total"]):
        print(f"{kind:<36}" + "".join(f"{v[ph]:>11.2f}" for ph in PHASES) + f"{v['total']:>11.2f}"
              f"{v['total'] / max(busy, 1e-9):>8.0%}")
    print(f"\n{'operator':<44}{'kind':<34}{'calls/step':>11}{'ms/step':>10}")
    for r in prof_summary["top_ops"]:
        print(f"{r['op'][:43]:<44}{r['kind'][:33]:<34}{r['calls_per_step']:>11.0f}{r['ms_per_step']:>10.2f}")

    results = {"method": args.method, "batch": batch, "resolution": res, "encoder_size": enc_size, "width": width,
               "fast_path": mode, "parts": rows, "sum_of_parts_ms": parts_ms, "step_ms": step_ms,
               "step": step, "generator_forward_no_grad_ms": 1e3 * ref["median_s"],
               "profile": {"steps": profile_steps, **prof_summary}}
    name = f"breakdown_{args.method}" + ("" if mode == "fp32" else "-" + "".join(
        c if c.isalnum() else "_" for c in mode))
    print(f"wrote {save_results(name, device, [results])}")
    return results


if __name__ == "__main__":
    main()
