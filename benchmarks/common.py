"""Timing helpers shared by the benchmarks: warm-up, device synchronisation, median of repeats."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def frozen_generator(
    resolution: int,  # Output px.
    width: float,  # Channel scale: 1 = config-f (512 channels at most); CPU runs use slimmed models.
    device: torch.device,
) -> torch.nn.Module:
    """A random-weight StyleGAN2 generator in eval mode, without parameter gradients, on ``device``."""
    from inversion.models import Generator

    kw = {} if width == 1.0 else {"channel_max": max(8, int(512 * width))}
    return Generator(img_resolution=resolution, **kw).eval().requires_grad_(False).to(device)


def fast_gpu_defaults(device: torch.device) -> None:
    """What the official numbers ran with on CUDA: cuDNN autotuning and TF32 convolutions / matrix products."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, warmup: int = 3, repeats: int = 20) -> dict:
    """Median / min / max wall time in seconds of ``fn()`` after ``warmup`` calls, synchronising the device."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def rel_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    """||x - reference|| / ||reference|| in float32: the fast paths' correctness guard."""
    return float((x.float() - reference.float()).norm() / reference.float().norm())


def peak_memory_gib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def save_results(name: str, device: torch.device, rows: list[dict], extra: dict | None = None) -> Path:
    """Write ``benchmarks/results/<name>-<device>.json`` and return its path."""
    dev = device_name(device)
    payload = {
        "device": dev,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
        **(extra or {}),
    }
    return write_results(payload, dev, name)


def write_results(payload: dict, device_label: str, prefix: str = "") -> Path:
    """Write ``benchmarks/results/[<prefix>-]<device slug>.json`` and return its path."""
    slug = "".join(c if c.isalnum() else "_" for c in device_label).strip("_").lower()
    path = Path(__file__).parent / "results" / (f"{prefix}-{slug}.json" if prefix else f"{slug}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    return path
