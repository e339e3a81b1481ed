"""Training-step throughput: images/s and peak memory for pSp, e4e and ReStyle-pSp steps (random weights).

    python benchmarks/train_step.py                 # 1024 px generator, batch 8, full-size nets on CUDA
    python benchmarks/train_step.py --device cpu    # slimmed models at 64 px so it runs anywhere

One step = inversion (encoder + frozen generator; ReStyle: 5 steps, no gradient across steps) + the README
ffhq_encode losses (L2 + LPIPS-alex + ArcFace ID, random weights) + backward to the encoder + Adam step, through
the same ``InversionModule.compute_losses`` that train.py uses. e4e here has its delta regulariser but not yet
its latent discriminator step. Writes benchmarks/results/train_step-<device>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import device_name, peak_memory_gib, reset_peak_memory, save_results, time_fn  # noqa: E402
from inversion import encoders as E  # noqa: E402
from inversion.inverter import Inverter  # noqa: E402
from inversion.losses import DeltaRegLoss, IDLoss, LPIPSLoss, MSELoss  # noqa: E402
from inversion.models import Generator  # noqa: E402
from inversion.training import InversionModule, LossTerm  # noqa: E402

METHODS = {  # name: (encoder class, input channels, ReStyle steps, extra losses)
    "pSp": (E.GradualStyleEncoder, 3, 1, {}),
    "e4e (delta reg, no latent D yet)": (E.Encoder4Editing, 3, 1, {"delta_reg": (2e-4, "delta")}),
    "ReStyle-pSp-5": (E.BackboneEncoder, 6, 5, {}),
}


class _DeltaReg(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.loss = DeltaRegLoss()

    def forward(self, ws, _avg):
        return self.loss(ws, stage=ws.shape[1] - 1)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resolution", type=int, default=None, help="generator px; default 1024 on CUDA, 64 on CPU")
    p.add_argument("--batch", type=int, default=None, help="default 8 on CUDA, 2 on CPU")
    p.add_argument("--width", type=float, default=None, help="channel scale; default 1 on CUDA, 0.125 on CPU")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--autocast", choices=["bfloat16", "float16"], default=None,
                   help="fast path: inversion + losses under torch.autocast (Lightning's precision=bf16-mixed)")
    p.add_argument("--channels-last", action="store_true", help="fast path: encoder and loss networks in NHWC")
    args = p.parse_args(argv)
    amp = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(args.autocast)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    res, batch = args.resolution or (1024 if gpu else 64), args.batch or (8 if gpu else 2)
    width = args.width or (1.0 if gpu else 0.125)
    enc_size = 256 if gpu else min(64, res)
    repeats, warmup = args.repeats or (20 if gpu else 2), args.warmup if args.warmup is not None else (3 if gpu else 1)
    if gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    gen_kw = {} if width == 1.0 else {"channel_max": max(8, int(512 * width))}
    G = Generator(img_resolution=res, **gen_kw).eval().requires_grad_(False).to(device)
    channels = [max(8, int(c * width)) for c in (64, 128, 256, 512)]
    id_pool = 112 if gpu else 32
    rows = []
    for name in args.methods:
        cls, nc, iters, extra = METHODS[name]
        enc = cls(num_ws=G.num_ws, w_dim=G.w_dim, in_channels=nc, input_size=enc_size, channels=channels)
        inv = Inverter(encoder=enc, generator=G, num_iters=iters, residual=iters > 1, encoder_size=enc_size)
        losses = {
            "l2": LossTerm(1.0, MSELoss()),
            "lpips": LossTerm(0.8, LPIPSLoss(net="alex")),
            "id": LossTerm(0.1, IDLoss(pool_size=id_pool, crop=None if not gpu else (35, 223, 32, 220),
                                       resize_to=256 if gpu else None, channels=channels)),
        }
        for k, (w, _) in extra.items():
            losses[k] = LossTerm(w, _DeltaReg(), inputs="ws_avg")
        module = InversionModule(inverter=inv, losses=losses, optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-4),
                                 loss_size=256 if gpu else enc_size, image_every_n_steps=0).to(device).train()
        opt = module.configure_optimizers()
        x = torch.rand(batch, 3, enc_size, enc_size, device=device) * 2 - 1

        def loss(module=module, x=x, amp=amp):
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                return module.compute_losses(module.inverter.invert(x), {"image": x})[0]

        guard = None
        if amp is not None or args.channels_last:  # correctness guard: the loss against the plain fp32 path
            with torch.no_grad():
                ref = float(loss(amp=None))
                if args.channels_last:
                    module.inverter.set_fast_path(channels_last=True)
                    for m in module.loss_terms.values():
                        m.to(memory_format=torch.channels_last)
                guard = abs(float(loss()) - ref) / abs(ref)

        def step(module=module, opt=opt, loss=loss):
            opt.zero_grad(set_to_none=True)
            loss().backward()
            opt.step()

        reset_peak_memory(device)
        t = time_fn(step, device, warmup=warmup, repeats=repeats)
        rows.append({"method": name, "batch": batch, "resolution": res, "encoder_size": enc_size, "width": width,
                     "s_per_step": t["median_s"], "images_per_s": batch / t["median_s"],
                     "peak_gib": peak_memory_gib(device), "autocast": args.autocast,
                     "channels_last": args.channels_last, "loss_rel_error_vs_fp32": guard, **t})
        del module, opt, inv, enc
    mode = " + ".join([*([f"autocast {args.autocast}"] if amp else []), *(["channels_last"] if args.channels_last
                                                                         else [])]) or "fp32"
    print(f"Training step, generator {res} px, batch {batch}, width x{width}, {mode} — {device_name(device)}")
    print(f"{'method':<34}{'s/step':>9}{'img/s':>9}{'peak GiB':>10}{'loss rel err':>14}")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        err = "-" if r["loss_rel_error_vs_fp32"] is None else f"{r['loss_rel_error_vs_fp32']:.2e}"
        print(f"{r['method']:<34}{r['s_per_step']:>9.3f}{r['images_per_s']:>9.1f}{peak:>10}{err:>14}")
    name = "train_step" if mode == "fp32" else "train_step-" + "".join(c if c.isalnum() else "_" for c in mode)
    print(f"wrote {save_results(name, device, rows)}")
    return rows


if __name__ == "__main__":
    main()
