"""Peak memory of ONE training step, as train.py runs it: pSp against ReStyle-pSp with 1 and 5 iterations.

    python -m benchmarks.memory --device cpu --resolution 32 --width 0.0625    # small nets, seconds on 2 cores
    python -m benchmarks.memory                                               # CUDA: full size, 1024 px, batch 8

Why: the official ReStyle trainer calls ``loss.backward()`` after each of its iterations, so only one
iteration's autograd graph is alive at a time; summing the iterations' losses and calling one backward gives
the same gradients but keeps every iteration's graph alive (up to num_iters x the activation memory). This
benchmark makes the difference visible: ReStyle-5's peak should be close to ReStyle-1's (and to pSp's).

Each method is the module train_step.py builds (``build_module``: encoder + frozen generator, the README
ffhq_encode losses, Ranger) trained by a real Lightning ``Trainer`` for ``warmup + 1`` steps on random images;
the last step is measured by a callback from its batch start to its batch end, so the forward, the backward(s)
and the optimizer step are all inside, whatever the LightningModule does (automatic or manual optimization).

* Every device: :class:`ActivationMemoryMeter`, the bytes of tensors autograd saves for backward (peak over the
  step; deterministic, so one step suffices). It is the number the CPU table and the test compare.
* CUDA also: the caching allocator's peak (``max_memory_allocated``, reset at the step's start) and that peak
  minus the memory allocated before the step (activations + gradients + transient buffers of the step).

``ReStyle-pSp-N`` is ReStyle-pSp-5's module with ``inverter.num_iters = N`` (same encoder, same losses).
Writes benchmarks/results/memory[-<fast path>]-<device>.json.
"""

from __future__ import annotations

import argparse
import re
import threading
import warnings

import pytorch_lightning as pl
import torch
from torch import nn

from benchmarks.common import device_name, frozen_generator, save_results, sync
from benchmarks.train_step import (
    METHODS,
    RandomImages,
    add_step_arguments,
    build_module,
    fast_path_label,
    step_sizes,
)

MiB = 2**20
GiB = 2**30
DEFAULT_METHODS = ("pSp", "ReStyle-pSp-1", "ReStyle-pSp-5")
_RESTYLE_N = re.compile(r"ReStyle-pSp-(\d+)")


class _Saved:
    """What the pack hook hands autograd instead of a saved tensor: the tensor, and a finalizer that tells the
    meter the storage reference is gone (autograd drops it when the graph is freed, by backward or by going out
    of scope)."""

    __slots__ = ("tensor", "key", "meter")

    def __init__(self, tensor: torch.Tensor, key: tuple, meter: ActivationMemoryMeter):
        self.tensor, self.key, self.meter = tensor, key, meter

    def __del__(self):
        self.meter._release(self.key)


class ActivationMemoryMeter:
    """Live and peak bytes of the tensors autograd saves for backward while this context is active.

    Counts: every tensor packed by autograd for a backward pass (``torch.autograd.graph.saved_tensors_hooks``:
    inputs and outputs that the ops' and custom Functions' ``save_for_backward`` keep), deduplicated by storage
    (views of one storage, or one tensor saved by several ops, count ``untyped_storage().nbytes()`` once, as
    long as any of them is saved). A storage stops counting when autograd frees the last saved reference to it:
    when backward has consumed that node (``retain_graph=False``) or the graph is dropped. ``peak_bytes`` is the
    maximum of the live total, i.e. the activation memory the autograd graphs hold at once.

    Excluded (they exist whether or not a graph does): ``nn.Parameter`` s (trainable or frozen), leaf tensors
    that require grad, views of either (``F.linear`` saves ``weight.t()``), and the storages of the parameters
    and buffers of the ``exclude`` modules (e.g. frozen networks' registered filters and normalisation constants).

    Not counted: tensors an op uses but does not save (transient intermediates freed during the forward),
    gradients and optimizer state, tensors a Python object holds (outputs kept in variables, ``ctx.attr =
    tensor`` in a custom Function instead of ``save_for_backward``), allocator fragmentation / caching and
    workspaces, and what happens inside backward (its temporaries). A storage is charged in full even when only
    a view of part of it is saved. Under ``torch.compile`` it sees what the compiled region's autograd Function
    saves (checked on a toy with the aot_eager backend: same peak as eager). With nested meters, only the
    innermost one sees new tensors (the hooks are a stack).

    Usable as ``with ActivationMemoryMeter() as m: ...`` or with :meth:`start` / :meth:`stop` (e.g. from two
    Lightning callbacks, on one thread). Storages packed while active keep being released after ``stop``.
    """

    def __init__(self, exclude: tuple[nn.Module, ...] | list[nn.Module] = ()):
        self.exclude = tuple(exclude)
        self._lock = threading.Lock()  # finalizers may run on autograd's device threads
        self._refs: dict[tuple, int] = {}  # storage key -> saved references alive
        self._nbytes: dict[tuple, int] = {}
        self._excluded: set[tuple] = set()
        self._hooks: torch.autograd.graph.saved_tensors_hooks | None = None
        self.live_bytes = 0  # bytes of saved storages alive now
        self.peak_bytes = 0  # maximum of live_bytes since start / reset_peak
        self.packed = 0  # saved tensors counted since start (references, not storages)
        self.skipped = 0  # saved tensors excluded (weights, leaves requiring grad, exclude modules' tensors)

    @staticmethod
    def _key(t: torch.Tensor) -> tuple:
        storage = t.untyped_storage()
        return (t.device.type, t.device.index, storage.data_ptr())

    # ---------------------------------------------------------------- hooks
    def _pack(self, t: torch.Tensor):
        base = t if t._base is None else t._base  # e.g. F.linear saves weight.t(), a view of the Parameter
        if isinstance(base, nn.Parameter) or (base.is_leaf and base.requires_grad):
            self.skipped += 1
            return t
        try:
            key, nbytes = self._key(t), t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):  # no storage (e.g. some tensor subclasses): charge its data
            key, nbytes = ("id", id(t)), t.numel() * t.element_size()
        if key in self._excluded:
            self.skipped += 1
            return t
        with self._lock:
            n = self._refs.get(key, 0)
            if n == 0:
                self._nbytes[key] = nbytes
                self.live_bytes += nbytes
                self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            self._refs[key] = n + 1
            self.packed += 1
        # a detached alias: an op's saved output arrives with that op's grad_fn, and holding it would make a
        # reference cycle (node -> holder -> tensor -> node) that keeps a graph dropped without backward alive
        return _Saved(t.detach(), key, self)

    @staticmethod
    def _unpack(saved):
        return saved.tensor if isinstance(saved, _Saved) else saved

    def _release(self, key: tuple) -> None:
        with self._lock:
            n = self._refs[key] - 1
            if n == 0:
                del self._refs[key]
                self.live_bytes -= self._nbytes.pop(key)
            else:
                self._refs[key] = n

    # ---------------------------------------------------------------- control
    def start(self) -> ActivationMemoryMeter:
        """Begin counting (resets the peak to what is live now)."""
        if self._hooks is not None:
            raise RuntimeError("ActivationMemoryMeter is already active")
        self._excluded = {self._key(t) for m in self.exclude for t in (*m.parameters(), *m.buffers())}
        self.reset_peak()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def stop(self) -> None:
        """Stop seeing new saved tensors (the ones seen keep being released as autograd frees them)."""
        if self._hooks is not None:
            self._hooks.__exit__(None, None, None)
            self._hooks = None

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_bytes = self.live_bytes

    def __enter__(self) -> ActivationMemoryMeter:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class StepMemory(pl.Callback):
    """Memory of the training step with index ``step`` (0-based, batch start to batch end): the
    :class:`ActivationMemoryMeter` peak and, on CUDA, the allocator's peak and what was allocated before."""

    def __init__(self, device: torch.device, step: int, exclude: tuple[nn.Module, ...] = ()):
        self.device, self.step, self.exclude = device, step, exclude
        self.meter: ActivationMemoryMeter | None = None
        self.result: dict | None = None
        self._before, self._batches = 0, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._batches += 1  # batches, not trainer.global_step: that counts optimizer steps (e4e: 2 per batch)
        if self._batches - 1 != self.step:
            return
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        self.meter = ActivationMemoryMeter(exclude=self.exclude).start()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.meter is None or self.result is not None:
            return
        self.meter.stop()
        self.result = {"activation_peak_mib": self.meter.peak_bytes / MiB,
                       "activation_live_after_mib": self.meter.live_bytes / MiB,
                       "saved_tensors": self.meter.packed}
        if self.device.type == "cuda":
            sync(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.result.update(peak_gib=peak / GiB, held_before_gib=self._before / GiB,
                               step_peak_minus_before_gib=(peak - self._before) / GiB)


def build(name: str, G: nn.Module, **kw) -> pl.LightningModule:
    """train_step's module for ``name``: a METHODS key, or ``ReStyle-pSp-N`` (ReStyle-pSp-5's, N iterations)."""
    if name in METHODS:
        return build_module(name, G, **kw)
    m = _RESTYLE_N.fullmatch(name)
    if m is None:
        raise ValueError(f"unknown method {name!r}: one of {sorted(METHODS)} or ReStyle-pSp-<N>")
    module = build_module("ReStyle-pSp-5", G, **kw)
    module.inverter.num_iters = int(m.group(1))
    return module


def measure(
    methods: tuple[str, ...] | list[str] = DEFAULT_METHODS,
    *,
    device: torch.device | str = "cpu",
    resolution: int = 32,  # Generator px.
    batch: int = 2,
    width: float = 0.0625,  # Channel scale of the generator, encoder and ID network.
    enc_size: int | None = None,  # Encoder input px; default min(64, resolution) (CPU) or 256 (CUDA).
    warmup: int = 0,  # Training steps before the measured one (CUDA: 1, so optimizer state exists).
    autocast: str | None = None,  # "bfloat16" / "float16": Lightning's mixed precision.
    channels_last: bool = False,
    fused_modconv: bool = True,
    compile: str | None = None,
    seed: int = 0,
) -> list[dict]:
    """One row per method: peak activation memory (MiB) of one real training step, its ratio to pSp's and to
    ReStyle-pSp-1's (when measured), and on CUDA the allocator's peaks (GiB)."""
    device = torch.device(device)
    gpu = device.type == "cuda"
    enc_size = enc_size or (256 if gpu else min(64, resolution))
    torch.manual_seed(seed)
    G = frozen_generator(resolution, width, device)
    data = RandomImages(batch * (warmup + 1), enc_size)
    precision = {None: "32-true", "bfloat16": "bf16-mixed", "float16": "16-mixed"}[autocast]
    rows = []
    for name in methods:
        torch.manual_seed(seed)
        module = build(name, G, device=device, width=width, enc_size=enc_size)
        if channels_last or compile or not fused_modconv:  # as train.py's fast.* switches
            module.set_fast_path(channels_last=channels_last, compile=compile, fused_modconv=fused_modconv)
        probe = StepMemory(device, step=warmup, exclude=(module,))
        trainer = pl.Trainer(accelerator="gpu" if gpu else "cpu", devices=1, max_steps=warmup + 1,
                             precision=precision, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                             num_sanity_val_steps=0, callbacks=[probe])
        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=False, pin_memory=gpu)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's advice on workers / logging for this synthetic run
            trainer.fit(module, train_dataloaders=loader)
        if probe.result is None:
            raise RuntimeError(f"{name}: the measured training step {warmup} did not run")
        rows.append({"method": name, "num_iters": module.inverter.num_iters, "batch": batch,
                     "resolution": resolution, "encoder_size": enc_size, "width": width, "autocast": autocast,
                     "channels_last": channels_last, "fused_modconv": fused_modconv, "compile": compile,
                     "measured_step": warmup, **probe.result})
        del module, trainer, probe
    ref = {r["method"]: r["activation_peak_mib"] for r in rows}
    for r in rows:
        r["ratio_to_pSp"] = r["activation_peak_mib"] / ref["pSp"] if "pSp" in ref else None
        restyle = r["method"].startswith("ReStyle-pSp-") and "ReStyle-pSp-1" in ref
        r["ratio_to_ReStyle-pSp-1"] = r["activation_peak_mib"] / ref["ReStyle-pSp-1"] if restyle else None
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(p)  # --repeats is accepted and ignored: the meter is deterministic
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                   help=f"any of {sorted(METHODS)} or ReStyle-pSp-<N> (default: %(default)s)")
    args = p.parse_args(argv)
    device, gpu, res, batch, width, enc_size, _, _ = step_sizes(args)
    warmup = args.warmup if args.warmup is not None else (1 if gpu else 0)
    rows = measure(args.methods, device=device, resolution=res, batch=batch, width=width, enc_size=enc_size,
                   warmup=warmup, autocast=args.autocast, channels_last=args.channels_last,
                   fused_modconv=not args.unfused_modconv, compile=args.compile)
    mode = fast_path_label(args)
    name = "memory" if mode == "fp32" else "memory-" + "".join(c if c.isalnum() else "_" for c in mode)
    print(f"Training-step memory, generator {res} px, encoder {enc_size} px, batch {batch}, width x{width}, "
          f"{mode}, step {warmup} measured — {device_name(device)}")
    print("activation = tensors autograd saves for backward, peak over the step (weights excluded)")
    print(f"{'method':<18}{'activation MiB':>16}{'x pSp':>8}{'x ReStyle-1':>13}"
          + (f"{'peak GiB':>10}{'peak - before GiB':>19}" if gpu else ""))
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    for r in rows:
        line = (f"{r['method']:<18}{r['activation_peak_mib']:>16.2f}{fmt(r['ratio_to_pSp']):>8}"
                f"{fmt(r['ratio_to_ReStyle-pSp-1']):>13}")
        if gpu:
            line += f"{r['peak_gib']:>10.2f}{r['step_peak_minus_before_gib']:>19.2f}"
        print(line)
    print(f"wrote {save_results(name, device, rows)}")
    return rows


if __name__ == "__main__":
    main()
