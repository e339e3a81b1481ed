"""The device and the inverter's speed on it (timing.json)."""

from __future__ import annotations

import platform
import statistics
import time
from typing import Any

import torch

from ..inverter import Inverter
from ..reconstruct import device_sync

__all__ = ["device_description", "measure_latency", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``device=`` as a torch device; an error naming the setting when CUDA is asked for but absent."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} requested but CUDA is not available; use device=cpu")
    return device


def device_description(device: torch.device) -> str:
    """The GPU's name, or the CPU and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} torch threads)"


def measure_latency(
    inverter: Inverter,
    x: torch.Tensor,  # One batch of encoder inputs on the device.
    *,
    num_iters: int | None = None,
    noise_mode: str = "const",
    warmup: int = 2,
    repeats: int = 5,
) -> dict[str, Any]:
    """Time ``inverter.invert`` (encoder + generator, every ReStyle step) per batch after warm-up, synchronised."""
    device = x.device
    sync = device_sync(device)
    times = []
    with torch.no_grad():
        for _ in range(max(0, warmup)):
            inverter.invert(x, num_iters=num_iters, noise_mode=noise_mode)
            sync()
        for _ in range(max(1, repeats)):
            sync()
            t0 = time.perf_counter()
            inverter.invert(x, num_iters=num_iters, noise_mode=noise_mode)
            sync()
            times.append(time.perf_counter() - t0)
    n = x.shape[0]
    return {
        "ms_per_image_median": 1000 * statistics.median(times) / n,
        "ms_per_image_mean": 1000 * sum(times) / len(times) / n,
        "ms_per_batch": [1000 * t for t in times],
        "batch_size": n,
        "warmup_batches": max(0, warmup),
        "timed_batches": len(times),
        "synchronized": device.type in ("cuda", "mps"),
        "what": "inverter.invert: encoder + generator at its resolution for every step; no data loading, "
                "resizing or metrics",
    }
