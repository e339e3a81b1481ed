"""Two numbers first: the arithmetic and the memory traffic of each part of a training step and of inference,
counted (not timed) at full size on the meta device, and the time floors they imply on a GPU.

    python -m benchmarks.roofline                        # 1024 px config-f, IR-SE50 encoders at 256 px, batch 8
    python -m benchmarks.roofline --peak-tflops 495 --bandwidth-tbs 3.35   # other ceilings (H100 datasheet)

Nothing is computed: the models (random weights, the modules benchmarks/train_step.py builds) run on
``torch.device("meta")``, where every operator only produces shapes, so this takes seconds on any machine and
its counts are facts about the code, not about a machine. Every aten operator the plain eager path dispatches,
forward and backward, is counted:

- FLOPs: torch.utils.flop_counter's formulas (convolutions and matrix products, 2 per multiply-add; the
  elementwise work is not counted, it is negligible as arithmetic);
- bytes: the operator's tensor inputs read and outputs written (views move nothing; a broadcast input counts its
  stored elements once), i.e. the traffic of an op-by-op implementation in fp32, each operator a round trip
  through device memory. The bytes of elementwise, reduction and copy operators are those a fused
  implementation (torch.compile, hand-written kernels) could keep on chip.

Floors: FLOPs / ``--peak-tflops`` and bytes / ``--bandwidth-tbs``. The defaults are the ceilings measured on the
lent H200 (KINDS.md, 2026-10-28: 788 TFLOP/s for a bf16 matrix product, 4.3 TB/s device copy); an H100 has the
same arithmetic rate and ~1.4x less bandwidth. A part cannot run faster than the larger floor; the measured time
over it (benchmarks/breakdown.py on the GPU) is the gap. Writes benchmarks/results/roofline.json.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from benchmarks.breakdown import KINDS, op_kind, step_parts
from benchmarks.common import frozen_generator
from benchmarks.train_step import build_module

FUSABLE = ("elementwise / other", "reduction", "copy / layout")
NO_TRAFFIC = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "lift_fresh", "detach",
              "_local_scalar_dense", "set_", "_unsafe_view"}  # _unsafe_view: a view its schema does not declare
WRITE_ONLY_FIRST = {"copy_", "fill_", "zero_", "uniform_", "normal_"}  # the first argument is written, not read


def _stored_bytes(t: torch.Tensor) -> int:
    """Bytes of the elements a tensor really stores (broadcast dims, stride 0, count once)."""
    n = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            n *= size
    return n * t.element_size()


def conv_flop(name: str, args: tuple, out) -> int:
    """FLOPs (2 per multiply-add) of a convolution or its backward, grouped and transposed ones included:
    forward = 2 x (output elements, or input elements if transposed) x prod(weight.shape[1:]); the backward pays
    that once per gradient asked for (input, weight). (torch.utils.flop_counter's backward formula ignores
    groups: it counts a grouped convolution's weight gradient ``groups`` times over.)"""
    if name == "convolution_backward":
        grad_out, x, w, transposed, mask = args[0], args[1], args[2], args[7], args[10]
        once = 2 * (x.numel() if transposed else grad_out.numel()) * math.prod(w.shape[1:])
        return once * (int(mask[0]) + int(mask[1]))
    x, w, transposed = args[0], args[1], args[6]
    return 2 * (x.numel() if transposed else out.numel()) * math.prod(w.shape[1:])


class TrafficCounter(TorchDispatchMode):
    """Counts FLOPs and bytes read + written of every aten operator dispatched inside it, by operator kind."""

    def __init__(self):
        super().__init__()
        self.flop: dict[str, float] = defaultdict(float)
        self.bytes: dict[str, float] = defaultdict(float)
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._overloadpacket.__name__
        if func.is_view or name in NO_TRAFFIC:
            return out
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        kind = op_kind(f"aten::{name}", [list(t.shape) for t in inputs])
        if name in ("convolution", "_convolution", "convolution_backward"):
            self.flop[kind] += conv_flop(name, args, out)
        elif func._overloadpacket in flop_registry:
            self.flop[kind] += flop_registry[func._overloadpacket](*args, **kwargs, out_val=out)
        read = inputs[1:] if name in WRITE_ONLY_FIRST else inputs
        self.bytes[kind] += sum(_stored_bytes(t) for t in read) + sum(_stored_bytes(t) for t in outputs)
        self.calls += 1
        return out

    def summary(self) -> dict:
        return {"gflop": sum(self.flop.values()) / 1e9, "gb": sum(self.bytes.values()) / 1e9,
                "gb_fusable": sum(v for k, v in self.bytes.items() if k in FUSABLE) / 1e9,
                "gflop_by_kind": {k: self.flop.get(k, 0.0) / 1e9 for k in KINDS},
                "gb_by_kind": {k: self.bytes.get(k, 0.0) / 1e9 for k in KINDS}, "operators": self.calls}


def count(fn) -> dict:
    with TrafficCounter() as counter:
        fn()
    return counter.summary()


def _add(*parts: tuple[float, dict]) -> dict:
    """Weighted sum of part summaries (weight = calls per step)."""
    total = {"gflop": 0.0, "gb": 0.0, "gb_fusable": 0.0, "gflop_by_kind": dict.fromkeys(KINDS, 0.0),
             "gb_by_kind": dict.fromkeys(KINDS, 0.0), "operators": 0}
    for weight, part in parts:
        for key in ("gflop", "gb", "gb_fusable", "operators"):
            total[key] += weight * part[key]
        for key in ("gflop_by_kind", "gb_by_kind"):
            for k in KINDS:
                total[key][k] += weight * part[key][k]
    return total


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=1024)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--encoder-size", type=int, default=256)
    p.add_argument("--width", type=float, default=1.0, help="channel scale (1 = full size)")
    p.add_argument("--peak-tflops", type=float, default=788.0, help="matrix-product ceiling, TFLOP/s")
    p.add_argument("--bandwidth-tbs", type=float, default=4.3, help="device-memory ceiling, TB/s")
    p.add_argument("--out", default=None, help="JSON path; default benchmarks/results/roofline.json")
    args = p.parse_args(argv)
    meta = torch.device("meta")
    n, res, enc_size = args.batch, args.resolution, args.encoder_size
    G = frozen_generator(res, args.width, torch.device("cpu")).to(meta)
    modules = {name: build_module(name, G, device=meta, width=args.width, enc_size=enc_size, full_size=True)
               for name in ("pSp", "ReStyle-pSp-5")}
    x = torch.empty(n, 3, enc_size, enc_size, device=meta)
    ws = torch.empty(n, G.num_ws, G.w_dim, device=meta)
    images = torch.empty(n, 3, res, res, device=meta)

    parts: dict[str, dict] = {}
    with torch.no_grad():
        parts["generator forward (no grad)"] = count(lambda: G.synthesis(ws))
    for name, module in modules.items():
        enc = module.inverter.encoder
        for key, forward, _ in step_parts(module, x, ws, images):
            if key == "encoder":
                with torch.no_grad():
                    parts[f"{name} encoder forward (no grad)"] = count(forward)
                key = f"{name} encoder"
            elif name != "pSp":  # the generator and the losses are the same for every method
                continue
            state: dict = {}
            parts[f"{key} forward"] = count(lambda forward=forward, state=state: state.update(out=forward()))
            parts[f"{key} backward"] = count(lambda state=state: state["out"].float().sum().backward())
        for q in enc.parameters():
            if q.requires_grad:
                q.grad = torch.empty_like(q)
        parts[f"{name} Ranger step"] = count(module.configure_optimizers().step)

    def loss_parts() -> list[tuple[float, dict]]:
        return [(1, v) for k, v in parts.items() if k.startswith("loss ")]

    gen = [(1, parts["generator forward"]), (1, parts["generator backward"])]
    totals = {
        "pSp train step": _add((1, parts["pSp encoder forward"]), (1, parts["pSp encoder backward"]), *gen,
                               *loss_parts(), (1, parts["pSp Ranger step"])),
        "ReStyle-pSp-5 train step": _add(*[(5 * w, v) for w, v in [(1, parts["ReStyle-pSp-5 encoder forward"]),
                                                                   (1, parts["ReStyle-pSp-5 encoder backward"]),
                                                                   *gen, *loss_parts()]],
                                         (1, parts["ReStyle-pSp-5 Ranger step"])),
        "pSp inference": _add((1, parts["pSp encoder forward (no grad)"]), (1, parts["generator forward (no grad)"])),
        "ReStyle-pSp-5 inference": _add((5, parts["ReStyle-pSp-5 encoder forward (no grad)"]),
                                        (5, parts["generator forward (no grad)"])),
    }
    # the anchors for the same work (official code, H100, fp32 + TF32): seconds per batch of 8
    anchors = {"pSp train step": 0.240, "ReStyle-pSp-5 train step": 1.067, "pSp inference": 8 * 7.37e-3,
               "ReStyle-pSp-5 inference": 8 * 39.4e-3}
    targets = {"pSp train step": 8 / 100, "ReStyle-pSp-5 train step": 8 / 22, "pSp inference": 8 * 2.5e-3,
               "ReStyle-pSp-5 inference": 8 * 13e-3}

    def floors(row: dict) -> dict:
        compute = row["gflop"] / args.peak_tflops  # GFLOP / (TFLOP/s) = ms
        memory = row["gb"] / args.bandwidth_tbs  # GB / (TB/s) = ms
        fused = (row["gb"] - row["gb_fusable"]) / args.bandwidth_tbs
        return {"compute_ms": compute, "memory_ms_eager_fp32": memory, "memory_ms_unfusable_fp32": fused}

    print(f"\n== Counted on the meta device: {res} px generator, encoders at {enc_size} px, batch {n}, width "
          f"x{args.width}; floors at {args.peak_tflops:g} TFLOP/s and {args.bandwidth_tbs:g} TB/s")
    print(f"{'part':<42}{'GFLOP':>9}{'GB':>8}{'fusable':>9}{'ops':>7}{'compute ms':>12}{'memory ms':>11}")
    for name, row in parts.items():
        fl = floors(row)
        print(f"{name:<42}{row['gflop']:>9.1f}{row['gb']:>8.2f}{row['gb_fusable']:>9.2f}{row['operators']:>7}"
              f"{fl['compute_ms']:>12.2f}{fl['memory_ms_eager_fp32']:>11.2f}")
    print(f"\n{'per batch of ' + str(n):<28}{'GFLOP':>9}{'GB':>8}{'fusable':>9}{'compute ms':>12}"
          f"{'memory ms':>11}{'unfusable':>11}{'official':>10}{'target':>9}")
    for name, row in totals.items():
        fl = floors(row)
        row["floors"] = fl
        row["official_h100_ms"] = 1e3 * anchors[name] if n == 8 else None
        row["target_ms"] = 1e3 * targets[name] if n == 8 else None
        off = "-" if row["official_h100_ms"] is None else f"{row['official_h100_ms']:.0f}"
        tgt = "-" if row["target_ms"] is None else f"{row['target_ms']:.0f}"
        print(f"{name:<28}{row['gflop']:>9.0f}{row['gb']:>8.1f}{row['gb_fusable']:>9.1f}{fl['compute_ms']:>12.1f}"
              f"{fl['memory_ms_eager_fp32']:>11.1f}{fl['memory_ms_unfusable_fp32']:>11.1f}{off:>10}{tgt:>9}")
    for name, row in totals.items():
        kinds = sorted(row["gb_by_kind"].items(), key=lambda kv: -kv[1])[:3]
        print(f"  {name}: most traffic in " + ", ".join(f"{k} {v:.1f} GB" for k, v in kinds))
    results = {"resolution": res, "batch": n, "encoder_size": enc_size, "width": args.width,
               "peak_tflops": args.peak_tflops, "bandwidth_tbs": args.bandwidth_tbs,
               "method": "meta-device operator counts (benchmarks/roofline.py)", "parts": parts, "totals": totals}
    path = Path(args.out) if args.out else Path(__file__).parent / "results" / "roofline.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
