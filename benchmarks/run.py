"""One entry point for the performance table: training steps, inference latency, W+ optimization and the data
loader, beside the official pSp / e4e / ReStyle figures and the targets of the performance issue.

    python -m benchmarks.run                 # CUDA: full-size models, 1024 px, random weights; CPU: small sizes
    python -m benchmarks.run --quick         # fewer repeats (smoke test)

Parts (each also runs alone): ``train_step.py`` (pSp, e4e, ReStyle-pSp-5 through Lightning, as train.py; batch
8), ``inference.py`` (batch 1
and 8), ``refine.py`` (W+, MSE + LPIPS-vgg with a random VGG trunk: the cost of the real one; batch 1 and 32),
``data.py`` (loader alone). Timing: warm-up, then the median of the repeats (>= 20 on CUDA), device synchronised.
The official column is the issue's anchor (official code, H100 80GB, fp32 + TF32, CUDA ops compiled); it is
comparable only with a full-size CUDA run. Writes ``benchmarks/results/<device>.json`` with every row.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks import data as data_bench
from benchmarks import inference as inference_bench
from benchmarks import refine as refine_bench
from benchmarks import train_step as train_bench
from benchmarks.common import device_name, write_results

# (what, unit, official H100 figure, target): from the performance issue
ANCHORS = {
    ("train", "pSp"): ("pSp train step, batch 8", "img/s", 33.3, ">= 100"),
    ("train", "e4e"): ("e4e train step (all deltas, latent D + R1/16), batch 8", "img/s", 26.9, ">= 80"),
    ("train", "ReStyle-pSp-5"): ("ReStyle-pSp train step (5 iters), batch 8", "img/s", 7.5, ">= 22"),
    ("infer", "pSp", 1): ("pSp inference, batch 1", "ms/img", 23.6, "<= 8"),
    ("infer", "pSp", 8): ("pSp inference, batch 8", "ms/img", 7.37, "<= 2.5"),
    ("infer", "e4e", 1): ("e4e inference, batch 1", "ms/img", 30.4, "<= 10"),
    ("infer", "e4e", 8): ("e4e inference, batch 8", "ms/img", 8.10, "<= 2.7"),
    ("infer", "ReStyle-pSp-5", 1): ("ReStyle-5 inference, batch 1", "ms/img", 151.0, "<= 50"),
    ("infer", "ReStyle-pSp-5", 8): ("ReStyle-5 inference, batch 8", "ms/img", 39.4, "<= 13"),
    ("refine", 1): ("W+ optimization (MSE + LPIPS-vgg), batch 1", "ms/img-step", 45.7, "-"),
    ("refine", 32): ("W+ optimization (MSE + LPIPS-vgg), batch 32", "ms/img-step", None, "<= 4.5"),
}


def _fmt(value: float | None) -> str:
    return "-" if value is None else (f"{value:.1f}" if value >= 10 else f"{value:.2f}")


def _common_flags(device_arg: str, quick: bool) -> list[str]:
    return ["--device", device_arg, *(["--repeats", "2", "--warmup", "1"] if quick else [])]


def _train_rows(device_arg: str, quick: bool, flags: list[str]) -> list[dict]:
    """train_step.py's rows: batch 8 on CUDA, 2 on CPU."""
    gpu = torch.device(device_arg).type == "cuda"
    return train_bench.main([*_common_flags(device_arg, quick), *flags, *([] if gpu else ["--batch", "2"])])


def _infer_rows(device_arg: str, quick: bool, flags: list[str]) -> list[dict]:
    """inference.py's rows at batch 1 and 8 (2 on CPU)."""
    gpu = torch.device(device_arg).type == "cuda"
    return inference_bench.main([*_common_flags(device_arg, quick), *flags, "--batch-sizes", "1", "8" if gpu else "2"])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="few repeats (smoke test; figures are not for quoting)")
    p.add_argument("--parts", nargs="+", default=["train", "infer", "refine", "data"],
                   choices=["train", "infer", "refine", "data"])
    p.add_argument("--autocast", choices=["bfloat16", "float16"], default=None, help="fast path for train + infer")
    p.add_argument("--channels-last", action="store_true", help="fast path for train + infer")
    p.add_argument("--compile", default=None, metavar="MODE", help="fast path for infer (torch.compile mode)")
    p.add_argument("--sweep", action="store_true",
                   help="train + infer once per fast-path setting (SWEEP), one comparison table; nothing else")
    args = p.parse_args(argv)
    if args.sweep:
        return sweep(args.device, quick=args.quick)
    fast = [*(["--autocast", args.autocast] if args.autocast else []),
            *(["--channels-last"] if args.channels_last else [])]
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    dev = ["--device", args.device]
    results: dict = {"device": device_name(device), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
                     "full_size": gpu, "quick": args.quick, "parts": {},
                     "fast_path": {"autocast": args.autocast, "channels_last": args.channels_last,
                                   "compile": args.compile}}
    table: list[tuple[str, str, float | None, float | None, str]] = []

    def save() -> Path:  # after every part, so a run cut short keeps what it measured
        results["table"] = [dict(zip(("what", "unit", "ours", "official_h100", "target"), row)) for row in table]
        return write_results(results, results["device"])

    if "train" in args.parts:
        rows = _train_rows(args.device, args.quick, fast)
        results["parts"]["train"] = rows
        for r in rows:
            what, unit, official, target = ANCHORS[("train", r["method"])]
            table.append((what.replace("batch 8", f"batch {r['batch']}"), unit, r["images_per_s"], official, target))
        save()
    if "infer" in args.parts:
        rows = _infer_rows(args.device, args.quick, [*fast, *(["--compile", args.compile] if args.compile else [])])
        results["parts"]["infer"] = rows
        for r in rows:
            what, unit, official, target = ANCHORS[("infer", r["method"], 1 if r["batch"] == 1 else 8)]
            table.append((what if gpu else f"{what.split(',')[0]}, batch {r['batch']}", unit, r["ms_per_image"],
                          official, target))
        save()
    if "refine" in args.parts:
        rows = refine_bench.main([*dev, "--lpips", "--batch-sizes", "1", "32" if gpu else "4",
                                  *(["--repeats", "1", "--steps", "2"] if args.quick else [])])
        results["parts"]["refine"] = rows
        for r in rows:
            what, unit, official, target = ANCHORS[("refine", 1 if r["batch"] == 1 else 32)]
            table.append((what if gpu else f"{what.split(',')[0]}, batch {r['batch']}", unit,
                          r["ms_per_image_step"], official, target))
        save()
    if "data" in args.parts:
        rows = data_bench.main(["--num-images", "16", "--resolution", "256", "--passes", "1"] if args.quick else [])
        results["parts"]["data"] = rows
        for r in rows:
            table.append((f"data loader: {r['loader']}", "img/s", r["images_per_s"], None, ">= 100 (prepared)"))
        save()

    scope = ("full size, 1024 px, random weights" if gpu else
             "CPU: small generators and slimmed encoders, NOT comparable with the official H100 column")
    print(f"\n== inversion performance — {results['device']} — {scope}")
    print(f"{'what':<58}{'unit':>12}{'ours':>10}{'official H100':>15}{'target':>20}")
    for what, unit, ours, official, target in table:
        if not gpu:  # the anchors are for full-size models on a GPU
            official, target = None, "n/a on CPU"
        print(f"{what:<58}{unit:>12}{_fmt(ours):>10}{_fmt(official):>15}{target:>20}")
    print(f"wrote {save()}")
    return results


# fast-path settings measured by --sweep: (label, train flags, inference flags; None = not measured); compile only on
# CUDA, last (its first steps compile for minutes), training compile on pSp alone
SWEEP = [
    ("fp32", [], []),
    ("channels_last", ["--channels-last"], ["--channels-last"]),
    ("bf16 autocast", ["--autocast", "bfloat16"], ["--autocast", "bfloat16"]),
    ("bf16 + channels_last", ["--autocast", "bfloat16", "--channels-last"],
     ["--autocast", "bfloat16", "--channels-last"]),
    ("unfused modconv", ["--unfused-modconv"], ["--unfused-modconv"]),
    ("compile (reduce-overhead)", None, ["--compile", "reduce-overhead"]),
    ("compile (default)", ["--compile", "default", "--methods", "pSp"], None),
]


def sweep(device_arg: str, quick: bool = False) -> dict:
    """Every SWEEP setting on the train and inference parts: one table of img/s (train) and ms/img (infer) per
    setting, with each setting's correctness guard (relative error against fp32)."""
    device = torch.device(device_arg)
    gpu = device.type == "cuda"
    columns: dict[str, dict[str, tuple[float, float | None]]] = {}
    for label, train_flags, infer_flags in SWEEP:
        if label.startswith("compile") and not gpu:
            continue
        col: dict[str, tuple[float, float | None]] = {}
        if train_flags is not None:
            for r in _train_rows(device_arg, quick, train_flags):
                col[f"train {r['method'].split(' ')[0]}, batch {r['batch']} (img/s)"] = (
                    r["images_per_s"], r["loss_rel_error_vs_fp32"])
        for r in _infer_rows(device_arg, quick, infer_flags) if infer_flags is not None else []:
            col[f"infer {r['method']}, batch {r['batch']} (ms/img)"] = (r["ms_per_image"], r["rel_error_vs_fp32"])
        columns[label] = col
        write_results(_sweep_payload(device, quick, columns), device_name(device), "sweep")
    rows = list(dict.fromkeys(k for col in columns.values() for k in col))
    print(f"\n== fast-path sweep — {device_name(device)} (value; relative error vs fp32 in brackets)")
    print(f"{'':<42}" + "".join(f"{label:>28}" for label in columns))
    for row in rows:
        cells = []
        for col in columns.values():
            value, err = col.get(row, (None, None))
            cells.append("-" if value is None else f"{_fmt(value)}" + ("" if err is None else f" [{err:.1e}]"))
        print(f"{row:<42}" + "".join(f"{c:>28}" for c in cells))
    results = _sweep_payload(device, quick, columns)
    print(f"wrote {write_results(results, results['device'], 'sweep')}")
    return results


def _sweep_payload(device: torch.device, quick: bool, columns: dict) -> dict:
    return {"device": device_name(device), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "quick": quick, "sweep": {label: {k: {"value": v, "rel_error_vs_fp32": e} for k, (v, e) in col.items()}
                                      for label, col in columns.items()}}


if __name__ == "__main__":
    main()
