"""Training-step throughput: images/s and peak memory of the pSp, e4e and ReStyle-pSp steps train.py runs.

    python -m benchmarks.train_step                 # 1024 px generator, batch 8, full-size nets on CUDA
    python -m benchmarks.train_step --device cpu    # slimmed models at 64 px so it runs anywhere
    python -m benchmarks.train_step --autocast bfloat16 --channels-last    # a fast path, with its guard

Each method is trained by a real Lightning ``Trainer`` for warm-up + repeats steps on random images (random
weights everywhere), and a callback times every training step (device synchronised); the median step after
warm-up is reported (and the mean: e4e's R1 penalty runs every 16th step). One step = what train.py does:
the experiment (conf/experiment/{psp,e4e,restyle_psp}_ffhq, composed like train.py; random weights): inversion
(encoder + frozen generator; ReStyle: 5 steps, no gradient across steps) + the ffhq_encode
losses (L2 + LPIPS-alex + ArcFace ID) + backward to the encoder + Ranger (conf/optimizer/ranger.yaml, as the
official code); e4e (``E4EModule``, all deltas) adds
its latent discriminator step, R1 every 16 steps, the adversarial term and delta regularisation. ``--autocast``
maps to Lightning's ``precision="bf16-mixed"``. Writes benchmarks/results/train_step[-<fast path>]-<device>.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch

from benchmarks.common import (
    device_name,
    fast_gpu_defaults,
    frozen_generator,
    peak_memory_gib,
    reset_peak_memory,
    save_results,
    sync,
)
from inversion.config import compose
from inversion.inverter import AUTOCAST_DTYPES
from inversion.models import Generator
from inversion.training import InversionModule
from inversion.training import build_module as build_training_module

METHODS = {  # name: (the conf/experiment it times, extra config overrides)
    "pSp": ("psp_ffhq", []),
    "e4e": ("e4e_ffhq", ["module.progressive_start=null"]),  # every delta from the start
    "ReStyle-pSp-5": ("restyle_psp_ffhq", []),
}


class StepTimer(pl.Callback):
    """Wall time of every training step (batch start to batch end), the device synchronised at both ends."""

    def __init__(self, device: torch.device):
        self.device, self.times, self._t0 = device, [], 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        sync(self.device)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        sync(self.device)
        self.times.append(time.perf_counter() - self._t0)


class RandomImages(torch.utils.data.Dataset):
    def __init__(self, n: int, size: int):
        self.images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i]}


def add_step_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of a training-step benchmark (this script, breakdown.py): device, sizes, repeats, fast paths."""
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resolution", type=int, default=None, help="generator px; default 1024 on CUDA, 64 on CPU")
    p.add_argument("--batch", type=int, default=None, help="default 8 on CUDA, 2 on CPU")
    p.add_argument("--width", type=float, default=None, help="channel scale; default 1 on CUDA, 0.125 on CPU")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats; default 20 on CUDA, 2 on CPU")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--autocast", choices=sorted(AUTOCAST_DTYPES), default=None,
                   help="fast path: autocast (Lightning precision bf16-mixed / 16-mixed)")
    p.add_argument("--channels-last", action="store_true", help="fast path: encoder and loss networks in NHWC")
    p.add_argument("--unfused-modconv", action="store_true",
                   help="generator modulated convs as activation scaling + shared conv + demodulation")
    p.add_argument("--compile", default=None, metavar="MODE",
                   help="fast path: torch.compile the encoder and generator synthesis (train.py fast.compile)")


def fast_path_label(args: argparse.Namespace) -> str:
    """'fp32', or the fast-path flags joined with ' + ' (for titles and result file names)."""
    return " + ".join([*([f"autocast {args.autocast}"] if args.autocast else []),
                       *(["channels_last"] if args.channels_last else []),
                       *(["unfused modconv"] if args.unfused_modconv else []),
                       *([f"compile {args.compile}"] if args.compile else [])]) or "fp32"


def step_sizes(args: argparse.Namespace) -> tuple[torch.device, bool, int, int, float, int, int, int]:
    """(device, gpu, resolution, batch, width, encoder px, repeats, warm-up) from the shared flags: full size on
    CUDA (1024 px, batch 8, 256 px encoder input, 20 repeats), slimmed on CPU; sets the CUDA defaults."""
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    res, batch = args.resolution or (1024 if gpu else 64), args.batch or (8 if gpu else 2)
    width = args.width or (1.0 if gpu else 0.125)
    enc_size = 256 if gpu else min(64, res)
    repeats, warmup = args.repeats or (20 if gpu else 2), args.warmup if args.warmup is not None else (3 if gpu else 1)
    fast_gpu_defaults(device)
    return device, gpu, res, batch, width, enc_size, repeats, warmup


def build_module(
    name: str,  # A METHODS key.
    G: Generator,  # The frozen generator, already on ``device``.
    *,
    device: torch.device,
    width: float,  # Encoder and ID-network channel scale (1 = full size).
    enc_size: int,  # Encoder input px.
    full_size: bool | None = None,  # pSp's ID crop / pooling and 256 px losses; None: on CUDA only.
) -> InversionModule:
    """The LightningModule train.py builds for ``name``'s experiment (``inversion.training.build_module`` on the
    composed config), with random weights instead of the weight files: encoder + ``G``, the ffhq_encode losses
    (L2 + LPIPS-alex + ArcFace ID; full-size ID crop and pooling on CUDA, slimmed on CPU) and Ranger, on ``device``."""
    gpu = device.type == "cuda" if full_size is None else full_size
    experiment, extra = METHODS[name]
    channels = "[" + ",".join(str(max(8, int(c * width))) for c in (64, 128, 256, 512)) + "]"
    overrides = [
        f"experiment={experiment}", *extra, f"encoder.net.input_size={enc_size}", f"encoder.net.channels={channels}",
        "encoder.backbone.path=null",  # random encoder weights
        "net@loss.lpips.module=random_lpips_alex", "net@loss.id.module=random_ir_se50",  # random loss networks
        f"+loss.id.module.channels={channels}",
        "module.image_every_n_steps=0", f"module.loss_size={256 if gpu else enc_size}",
    ]
    if not gpu:  # a small ID network: no 256 px pooling, no face crop, 32 px input
        overrides += ["+loss.id.module.pool_size=32", "+loss.id.module.crop=null", "+loss.id.module.resize_to=null"]
    return build_training_module(compose("train", overrides), generator=G).to(device)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(p)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = p.parse_args(argv)
    amp = AUTOCAST_DTYPES.get(args.autocast)
    device, gpu, res, batch, width, enc_size, repeats, warmup = step_sizes(args)
    G = frozen_generator(res, width, device)
    data = RandomImages(batch * (warmup + repeats), enc_size)
    mode = fast_path_label(args)
    result_name = "train_step" if mode == "fp32" else "train_step-" + "".join(
        c if c.isalnum() else "_" for c in mode)
    rows = []
    for name in args.methods:
        module = build_module(name, G, device=device, width=width, enc_size=enc_size)
        inv, enc = module.inverter, module.inverter.encoder

        guard = None
        if amp is not None or args.channels_last or args.unfused_modconv or args.compile:  # guard: vs plain fp32
            x = data.images[:batch].to(device)
            with torch.no_grad():
                ref = float(module.compute_losses(module.inverter.invert(x), {"image": x})[0])
                if args.channels_last or args.unfused_modconv or args.compile:  # as train.py's fast.* switches
                    module.set_fast_path(channels_last=args.channels_last, compile=args.compile,
                                         fused_modconv=not args.unfused_modconv)
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    fast = float(module.compute_losses(module.inverter.invert(x), {"image": x})[0])
            guard = abs(fast - ref) / abs(ref)

        timer = StepTimer(device)
        precision = {None: "32-true", torch.bfloat16: "bf16-mixed", torch.float16: "16-mixed"}[amp]
        trainer = pl.Trainer(accelerator="gpu" if gpu else "cpu", devices=1, max_steps=warmup + repeats,
                             precision=precision, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                             num_sanity_val_steps=0, callbacks=[timer])
        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=False, pin_memory=gpu)
        reset_peak_memory(device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's advice on workers / logging for this synthetic run
            trainer.fit(module, train_dataloaders=loader)
        times = timer.times[warmup:]
        median = statistics.median(times)
        rows.append({"method": name, "batch": batch, "resolution": res, "encoder_size": enc_size, "width": width,
                     "s_per_step": median, "images_per_s": batch / median,
                     "images_per_s_mean_step": batch / statistics.fmean(times),
                     "peak_gib": peak_memory_gib(device), "autocast": args.autocast,
                     "channels_last": args.channels_last, "fused_modconv": not args.unfused_modconv,
                     "compile": args.compile,
                     "loss_rel_error_vs_fp32": guard,
                     "median_s": median, "min_s": min(times), "max_s": max(times), "repeats": len(times),
                     "warmup": warmup, "timing": "Lightning Trainer.fit, per training step, device synchronised"})
        save_results(result_name, device, rows)  # after every method: a run cut short keeps what it measured
        del module, inv, enc, trainer
    print(f"Training step, generator {res} px, batch {batch}, width x{width}, {mode} — {device_name(device)}")
    print(f"{'method':<34}{'s/step':>9}{'img/s':>9}{'peak GiB':>10}{'loss rel err':>14}")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        err = "-" if r["loss_rel_error_vs_fp32"] is None else f"{r['loss_rel_error_vs_fp32']:.2e}"
        print(f"{r['method']:<34}{r['s_per_step']:>9.3f}{r['images_per_s']:>9.1f}{peak:>10}{err:>14}")
    print(f"wrote {save_results(result_name, device, rows)}")
    return rows


if __name__ == "__main__":
    main()
