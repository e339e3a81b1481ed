"""Training-step conformance: the paper experiments' training steps replayed against the official trainers.

Also: stylegan3-editing's ReStyle experiments (five batches: gradient accumulation and the epoch-start rule, against
its 36ce2b4 coaches) and pSp's image-to-image tasks (source -> target pairs, the README's task lambdas, w-norm and
the crop losses).

For each of ``psp_ffhq``, ``e4e_ffhq``, ``restyle_psp_ffhq`` and ``restyle_e4e_ffhq`` the real experiment config
trains two steps at tiny size (random weights in the official file layouts, a 64 px generator, 32 px encoder and
loss size). The oracle below is written from the official coaches' logic -- pixel2style2pixel ``5cfff38``
``training/coach.py``, encoder4editing ``99ea505`` ``training/coach.py`` + ``scripts/train.py``, restyle-encoder
``5e80276`` ``training/coach_restyle_{psp,e4e}.py`` -- and replays the same two steps from the same initial weights
on the batches the run saw: which terms at which iteration, each ``backward()`` in the official order, fresh generator
noise per forward, the per-parameter Ranger, e4e's pools, discriminator step and R1, the progressive schedule. The
randomness is fixed on both sides: the generator noise comes from the run's per-step seed (drawn in the official
layer order), the pools' choices from ``random.Random(0)`` / ``(1)``, the real codes' ``z`` from seed 2.

Compared (relative error <= 1e-9; both sides run in float64 so that rounding cannot hide a procedural difference --
measured: identical losses, updates to ~5e-14): every loss value handed to ``backward()`` and its order, every
logged term of every iteration, the encoder's parameter update, its BatchNorm statistics (and the number of
train-mode encoder passes), and the discriminator's update.
"""

from __future__ import annotations

import copy
import os
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_optimizer import _ReferenceRanger
from torch import autograd

from inversion.training import train as run_training
from inversion.training.module import step_noise_seed

from helpers import tiny_generator

REPO = Path(__file__).resolve().parents[1]

SEED = 0
RTOL = 1e-9  # float64 runs (Lightning's 64-true) on both sides: rounding does not hide a procedural difference
RES, SIZE = 64, 32  # generator resolution; encoder input and loss size (the official face_pool to 256, scaled down)

# the official defaults (README commands / options) the experiments must carry
OFFICIAL = dict(lr=1e-4, l2=1.0, lpips=0.8, id=0.1, w_disc=0.1, d_lr=2e-5, r1=10.0, d_reg_every=16,
                delta_norm=2, delta_lambda=2e-4)


# ----------------------------------------------------------------------------------------------- the official step
class OfficialPool:
    """models/latent_codes_pool.py's LatentCodesPool, with its ``random`` module as an explicit ``random.Random``."""

    def __init__(self, pool_size: int, rng: random.Random):
        self.pool_size, self.ws, self.rng = pool_size, [], rng

    def query(self, ws: torch.Tensor) -> torch.Tensor:
        out = []
        for w in ws:
            if w.ndim == 2:
                w = w[self.rng.randint(0, len(w) - 1)]
            if len(self.ws) < self.pool_size:
                self.ws.append(w)
                out.append(w)
            elif self.rng.uniform(0, 1) > 0.5:
                i = self.rng.randint(0, self.pool_size - 1)
                tmp = self.ws[i].clone()
                self.ws[i] = w
                out.append(tmp)
            else:
                out.append(w)
        return torch.stack(out, 0)


def official_noise(G, n: int, gen: torch.Generator, dtype: torch.dtype) -> list[torch.Tensor]:
    """rosinality's ``randomize_noise=True``: a fresh N(0, 1) map per layer (``image.new_empty(n, 1, h, w).normal_()``,
    in the activations' dtype), 4x4 then two per resolution."""
    sizes = [4] + [4 * 2 ** (1 + i // 2) for i in range(G.num_layers - 1)]
    return [torch.randn(n, 1, s, s, generator=gen, dtype=dtype) for s in sizes]


class OfficialCoach:
    """One Coach of the official repos, reduced to its training step: ``kind`` is psp, e4e, restyle_psp or
    restyle_e4e; ``sg3``: stylegan3-editing's coaches (no generator noise, real codes from the StyleGAN3 mapping,
    the encoder's optimizer stepping when ``batch_idx % accumulate == 0``, gradients zeroed at each epoch start).
    Holds its own copies of the encoder and the latent discriminator."""

    def __init__(self, kind: str, module, init: dict, n_iters: int, progressive: list[int] | None, *,
                 sg3: bool = False, accumulate: int = 1, d_reg_every: int = OFFICIAL["d_reg_every"],
                 lambdas: dict | None = None, size: int = SIZE, crop: tuple[int, int, int, int] | None = None):
        self.kind, self.n_iters, self.progressive_steps = kind, n_iters, progressive
        # pSp's task commands: --id/l2/lpips/w_norm/lpips_crop/l2_crop_lambda; the crop box at the loss size
        self.lambdas = {"id": OFFICIAL["id"], "l2": OFFICIAL["l2"], "lpips": OFFICIAL["lpips"], **(lambdas or {})}
        self.size, self.crop = size, crop
        self.sg3, self.accumulate, self.d_reg_every = sg3, accumulate, d_reg_every
        self.e4e = kind in ("e4e", "restyle_e4e")
        self.restyle = kind.startswith("restyle")
        self.encoder = copy.deepcopy(module.inverter.encoder)
        self.encoder.load_state_dict(init["encoder"])
        self.encoder.train()
        self.G = module.inverter.generator
        self.latent_avg = module.inverter.latent_avg.clone()  # [num_ws, w_dim], as pSp repeats it
        self.lpips = module.loss_terms["lpips"] if "lpips" in module.loss_terms else None
        self.lpips_crop = module.loss_terms["lpips_crop"] if "lpips_crop" in module.loss_terms else None
        self.id_net = module.loss_terms["id"] if "id" in module.loss_terms else None
        self.ranger = _ReferenceRanger(list(self.encoder.parameters()), lr=OFFICIAL["lr"])
        if self.e4e:
            self.D = copy.deepcopy(module.discriminator)
            self.D.load_state_dict(init["discriminator"])
            self.d_opt = torch.optim.Adam(list(self.D.parameters()), lr=OFFICIAL["d_lr"])
            self.fake_pool, self.real_pool = OfficialPool(50, random.Random(0)), OfficialPool(50, random.Random(1))
            self.z_gen = torch.Generator().manual_seed(2)
        if self.restyle:  # coach __init__: the average image, fixed noise, face_pool'ed
            with torch.no_grad():
                self.avg_image = F.adaptive_avg_pool2d(self.G.synthesis(self.latent_avg[None], noise_mode="const"),
                                                       size)[0]

    # e4e encoder progressive stage, coach.check_for_progressive_training_update
    def set_stage(self, step: int) -> None:
        if self.progressive_steps is None:
            return
        for i, s in enumerate(self.progressive_steps):
            if step >= s:
                self.encoder.progressive_stage = i

    @property
    def stage(self) -> int:
        return int(self.encoder.progressive_stage)

    def dims_to_discriminate(self) -> list[int]:
        if self.progressive_steps is None:  # is_progressive_training() is False: every layer
            return list(range(self.G.num_ws))
        return list(range(self.G.num_ws))[: self.stage + 1]

    def net_forward(self, x_input: torch.Tensor, latent, gen: torch.Generator):
        """models/psp.py (pSp / e4e / ReStyle) forward with return_latents, randomize_noise=True, resize=True."""
        codes = self.encoder(x_input)
        codes = codes + (latent if latent is not None else self.latent_avg.repeat(codes.shape[0], 1, 1))
        if self.sg3:  # psp3.py: decoder.synthesis(codes, noise_mode='const', force_fp32=True); StyleGAN3 has no noise
            images = self.G.synthesis(codes)
        else:
            images = self.G.synthesis(codes, noise=official_noise(self.G, codes.shape[0], gen, codes.dtype))
        return F.adaptive_avg_pool2d(images, self.size), codes

    def calc_loss(self, x, y, y_hat, latent):
        loss_dict, loss = {}, 0.0
        if self.e4e:  # adversarial loss
            dims = self.dims_to_discriminate()
            loss_disc = 0.0
            for i in dims:
                loss_disc += F.softplus(-self.D(latent[:, i, :])).mean()
            loss_disc /= len(dims)
            loss_dict["encoder_discriminator_loss"] = float(loss_disc)
            loss += OFFICIAL["w_disc"] * loss_disc
            if self.progressive_steps is not None and self.stage != self.G.num_ws:  # delta regularisation
                total_delta_loss = 0
                first_w = latent[:, 0, :]
                for i in range(1, self.stage + 1):
                    delta_loss = torch.norm(latent[:, i, :] - first_w, OFFICIAL["delta_norm"], dim=1).mean()
                    loss_dict[f"delta{i}_loss"] = float(delta_loss)
                    total_delta_loss += delta_loss
                loss_dict["total_delta_loss"] = float(total_delta_loss)
                loss += OFFICIAL["delta_lambda"] * total_delta_loss
        lam = self.lambdas
        if self.id_net is not None and lam["id"] > 0:
            # criteria/id_loss.py: features of the crop, 1 - <y_hat, y>, improvement over <y, x> (x: the source)
            y_hat_feats, y_feats = self.id_net.embed(y_hat), self.id_net.embed(y).detach()
            x_feats = self.id_net.embed(x)
            diff_target = (y_hat_feats * y_feats).sum(1)
            loss_id = (1 - diff_target).mean()
            loss_dict["loss_id"] = float(loss_id)
            loss_dict["id_improve"] = float((diff_target - (y_feats * x_feats).sum(1)).mean())
            loss += loss_id * lam["id"]
        loss_l2 = F.mse_loss(y_hat, y)
        loss_dict["loss_l2"] = float(loss_l2)
        loss += loss_l2 * lam["l2"]
        if self.lpips is not None and lam["lpips"] > 0:
            loss_lpips = self.lpips(y_hat, y)
            loss_dict["loss_lpips"] = float(loss_lpips)
            loss += loss_lpips * lam["lpips"]
        if self.crop is not None:  # pSp: y_hat[:, :, 35:223, 32:220] and y likewise
            t, b, left, r = self.crop
            if self.lpips_crop is not None and lam.get("lpips_crop", 0) > 0:
                loss_lpips_crop = self.lpips_crop(y_hat[:, :, t:b, left:r], y[:, :, t:b, left:r])
                loss_dict["loss_lpips_crop"] = float(loss_lpips_crop)
                loss += loss_lpips_crop * lam["lpips_crop"]
            if lam.get("l2_crop", 0) > 0:
                loss_l2_crop = F.mse_loss(y_hat[:, :, t:b, left:r], y[:, :, t:b, left:r])
                loss_dict["loss_l2_crop"] = float(loss_l2_crop)
                loss += loss_l2_crop * lam["l2_crop"]
        if lam.get("w_norm", 0) > 0:  # criteria/w_norm.py with start_from_latent_avg
            latent_norm = (latent - self.latent_avg).norm(2, dim=(1, 2))
            loss_w_norm = latent_norm.sum() / latent.shape[0]
            loss_dict["loss_w_norm"] = float(loss_w_norm)
            loss += loss_w_norm * lam["w_norm"]
        loss_dict["loss"] = float(loss)
        return loss, loss_dict

    def train_discriminator(self, x_input: torch.Tensor, step: int, backward_log: list) -> dict:
        for p in self.D.parameters():
            p.requires_grad = True
        with torch.no_grad():  # sample_real_and_fake_latents
            z = torch.randn(x_input.shape[0], self.G.z_dim, generator=self.z_gen, dtype=x_input.dtype)
            # StyleGAN3: decoder.mapping(z, c) -> [B, num_ws, w_dim], the pool picks a layer per sample
            real_w = self.G.mapping(z) if self.sg3 else self.G.style(z)
            fake_w = self.encoder(x_input)
            if self.kind == "e4e":  # start_from_latent_avg; ReStyle-e4e feeds the raw encoder output
                fake_w = fake_w + self.latent_avg.repeat(fake_w.shape[0], 1, 1)
            fake_w = fake_w[:, self.dims_to_discriminate(), :]
            real_w = self.real_pool.query(real_w)
            fake_w = self.fake_pool.query(fake_w)
            if fake_w.ndim == 3:
                fake_w = fake_w[:, 0, :]
        real_loss = F.softplus(-self.D(real_w)).mean()
        fake_loss = F.softplus(self.D(fake_w)).mean()
        loss = real_loss + fake_loss
        logs = {"d_real_loss": float(real_loss), "d_fake_loss": float(fake_loss), "discriminator_loss": float(loss)}
        self.d_opt.zero_grad(set_to_none=False)
        backward_log.append(float(loss))
        loss.backward()
        self.d_opt.step()
        if step % self.d_reg_every == 0:  # r1 on the same (pooled) real codes
            real_w = real_w.detach()
            real_w.requires_grad = True
            real_pred = self.D(real_w)
            (grad_real,) = autograd.grad(outputs=real_pred.sum(), inputs=real_w, create_graph=True)
            r1_loss = grad_real.pow(2).reshape(grad_real.shape[0], -1).sum(1).mean()
            self.D.zero_grad(set_to_none=False)
            r1_final_loss = OFFICIAL["r1"] / 2 * r1_loss * self.d_reg_every + 0 * real_pred[0]
            backward_log.append(float(r1_final_loss))
            r1_final_loss.backward()
            self.d_opt.step()
            logs["discriminator_r1_loss"] = float(r1_final_loss)
        for p in self.D.parameters():
            p.requires_grad = False
        return logs

    def train_step(self, y: torch.Tensor, step: int, batch_idx: int, source: torch.Tensor | None = None) -> dict:
        """One iteration of the official ``train()`` loop on the batch ``(x, y)`` -- ``x`` the source (pSp's tasks)
        or the target itself -- at ``global_step = step``, the epoch's batch ``batch_idx``."""
        x = y if source is None else source
        self.set_stage(step)
        gen = torch.Generator().manual_seed(step_noise_seed(SEED, "train", step))
        backward_log, iterations, d_logs = [], [], {}
        if self.e4e:
            x_input = torch.cat([x, self.avg_image[None].repeat(x.shape[0], 1, 1, 1)], 1) if self.restyle else x
            d_logs = self.train_discriminator(x_input, step, backward_log)
        if batch_idx == 0 or not self.sg3:  # sg3: zero_grad at each epoch start (the while loop); else every step
            for p in self.encoder.parameters():
                p.grad = None
        if not self.restyle:
            y_hat, latent = self.net_forward(x, None, gen)
            loss, loss_dict = self.calc_loss(x, y, y_hat, latent)
            backward_log.append(float(loss))
            loss.backward()
            iterations.append(loss_dict)
        else:  # perform_train_iteration_on_batch: backward after every iteration
            y_hat = latent = None
            for it in range(self.n_iters):
                if it == 0:
                    x_input = torch.cat([x, self.avg_image[None].repeat(x.shape[0], 1, 1, 1)], 1)
                    y_hat, latent = self.net_forward(x_input, None, gen)
                else:
                    y_hat_clone = y_hat.clone().detach().requires_grad_(True)
                    latent_clone = latent.clone().detach().requires_grad_(True)
                    y_hat, latent = self.net_forward(torch.cat([x, y_hat_clone], 1), latent_clone, gen)
                loss, loss_dict = self.calc_loss(x, y, y_hat, latent)
                backward_log.append(float(loss))
                loss.backward()
                iterations.append(loss_dict)
        stepped = batch_idx % self.accumulate == 0  # sg3: "only update the optimizer after we've seen 8 examples"
        if stepped:
            self.ranger.step([p.grad for p in self.encoder.parameters()])
            with torch.no_grad():
                for p, new in zip(self.encoder.parameters(), self.ranger.params):
                    p.copy_(new)
            for p in self.encoder.parameters():  # optimizer.zero_grad() after the step
                p.grad = None
        return {"backward": backward_log, "iterations": iterations, "d": d_logs, "stepped": stepped}


# ----------------------------------------------------------------------------------------------- our run
def _experiment_files(tmp_path: Path, sg3: bool = False, images: int = 4, size: int = SIZE) -> list[str]:
    """Tiny random weights in the official layouts (``sg3``: a StyleGAN3-R state dict as stylegan3-editing's
    ``sg3-r-ffhq-1024.pt``), a folder of ``images`` images, and the overrides that use them."""
    from test_train import _write_folder

    from inversion.encoders import Backbone
    from inversion.models import demo_stylegan3

    if sg3:
        G = demo_stylegan3(img_resolution=RES, channel_max=16, use_radial_filters=True)
        gen_path = tmp_path / "sg3-r-tiny.pt"
        torch.save(G.state_dict(), gen_path)
        generator = [f"paths.stylegan3_r_ffhq={gen_path}"]
    else:
        G = tiny_generator(RES)
        gen_path = tmp_path / "stylegan2-tiny.pt"
        torch.save({"g_ema": {k: v for k, v in G.state_dict().items() if k != "w_avg"}, "latent_avg": G.w_avg},
                   gen_path)
        generator = [f"paths.stylegan2_ffhq={gen_path}"]
    id_path = tmp_path / "model_ir_se50_tiny.pth"
    torch.manual_seed(1)
    torch.save(Backbone(112, 50, "ir_se", channels=(16, 16, 32, 32)).state_dict(), id_path)
    ids = _write_folder(tmp_path / "imgs", n=images + 2)[:-2]
    split = tmp_path / "split.txt"
    split.write_text("\n".join(ids) + "\n")
    shared = Path(os.environ.get("INVERSION_SHARED", REPO.parent / "shared"))
    alex = shared / "weights" / "alexnet_features_imagenet.pth"
    lpips = [f"paths.lpips_alex={alex}"] if alex.is_file() else ["loss.lpips.weight=0"]
    return [
        *generator, f"generator.img_resolution={RES}", f"generator.num_ws={G.num_ws}",
        f"generator.w_dim={G.w_dim}", f"paths.ir_se50={id_path}", "+loss.id.module.channels=[16,16,32,32]", *lpips,
        f"paths.data_root={tmp_path / 'imgs'}", f"paths.celebahq_root={tmp_path / 'imgs'}",
        f"data.train.ids={split}", f"data.val.ids={split}", "data.num_workers=0", "data.batch_size=2",
        "data.train.min_size=32", "data.val.min_size=32", f"data.train.transform.transforms.0.size=[{size},{size}]",
        f"data.val.transform.transforms.0.size=[{size},{size}]", "encoder.net.channels=[16,16,32,32]",
        f"encoder.net.input_size={size}", f"module.loss_size={size}", "trainer.max_steps=2",
        "trainer.limit_val_batches=0",
        "trainer.accelerator=cpu", "trainer.precision=64-true", "logger=csv", "trainer.log_every_n_steps=1",
        f"seed={SEED}",
    ]


def _run_and_record(tmp_path: Path, experiment: str, extra: list[str], monkeypatch, **files) -> dict:
    """Train the experiment for two steps; record the initial weights, each step's batch, every loss handed to
    backward(), every iteration's terms, the discriminator logs and the weights after each step."""
    import pytorch_lightning as pl
    from test_train import _cfg

    monkeypatch.setenv("WANDB_MODE", "offline")
    rec: dict = {"steps": []}
    real_fit = pl.Trainer.fit

    def state(m):
        out = {"encoder": {k: v.detach().clone() for k, v in m.inverter.encoder.state_dict().items()}}
        if hasattr(m, "discriminator"):
            out["discriminator"] = {k: v.detach().clone() for k, v in m.discriminator.state_dict().items()}
        return out

    def fit(self, module, *a, **k):
        rec["module"], rec["init"] = module, state(module)
        train_step, backward, extra_losses = module.training_step, module.manual_backward, module.extra_losses
        before = module.before_encoder_phase

        def spy_train(batch, batch_idx):
            source = batch.get("source")
            rec["steps"].append({"x": batch["image"].clone(), "batch_idx": batch_idx, "backward": [],
                                 "iterations": [], "d": {}, "source": None if source is None else source.clone()})
            out = train_step(batch, batch_idx)
            rec["steps"][-1]["after"] = state(module)
            return out

        def spy_backward(loss, *aa, **kk):
            rec["steps"][-1]["backward"].append(float(loss))
            return backward(loss, *aa, **kk)

        def spy_extra(step, t, last, terms):
            out = extra_losses(step, t, last, terms)
            rec["steps"][-1]["iterations"].append({k: float(v) for k, v in terms.items()})
            return out

        def spy_before(batch, stage, index):
            logs = before(batch, stage, index)
            if stage == "train":
                rec["steps"][-1]["d"] = {k: float(v) for k, v in logs.items() if k != "progressive_stage"}
            return logs

        module.training_step, module.manual_backward = spy_train, spy_backward
        module.extra_losses, module.before_encoder_phase = spy_extra, spy_before
        return real_fit(self, module, *a, **k)

    monkeypatch.setattr(pl.Trainer, "fit", fit)
    cfg = _cfg(tmp_path / "run", f"experiment={experiment}", *_experiment_files(tmp_path, **files), *extra)
    run_training(cfg)
    rec["cfg"] = cfg
    return rec


OURS_TO_OFFICIAL = {"l2": "loss_l2", "lpips": "loss_lpips", "id": "loss_id", "lpips_crop": "loss_lpips_crop",
                    "l2_crop": "loss_l2_crop", "w_norm": "loss_w_norm"}


def _close(a: float, b: float, what: str, rtol: float = RTOL) -> None:
    assert abs(a - b) <= rtol * max(abs(b), 1e-6), f"{what}: ours {a!r} vs official {b!r}"


def _updates_close(before: dict, ours: dict, official: dict, what: str, rtol: float = RTOL) -> int:
    """Per tensor: the update ours made equals the official one to ``rtol`` of its norm. Returns how many moved."""
    moved = 0
    for k, b in before.items():
        if not b.is_floating_point():
            assert torch.equal(ours[k], official[k]), f"{what} {k}: {ours[k]} vs {official[k]}"
            continue
        d_ours, d_off = ours[k] - b, official[k] - b
        err, scale = (d_ours - d_off).norm().item(), d_off.norm().item()
        assert err <= rtol * scale + 1e-9, f"{what} {k}: update differs by {err:.3g} (official update norm {scale:.3g})"
        moved += scale > 0
    return moved


def _replay(rec: dict, kind: str, n_iters: int, progressive: list[int] | None, rtol: float = RTOL,
            num_steps: int = 2, **coach) -> None:
    """Replay the recorded steps with the official coach and compare everything (see the module doc)."""
    module = rec["module"]
    coach = OfficialCoach(kind, module, rec["init"], n_iters, progressive, **coach)
    assert len(rec["steps"]) == num_steps
    params = [k for k, _ in module.inverter.encoder.named_parameters()]
    before = rec["init"]
    for step, ours in enumerate(rec["steps"]):
        official = coach.train_step(ours["x"], step, ours["batch_idx"], ours["source"])
        # the same backward() calls in the same order: [D, R1 (step 0)], then one per iteration
        assert len(ours["backward"]) == len(official["backward"]), (ours["backward"], official["backward"])
        for i, (a, b) in enumerate(zip(ours["backward"], official["backward"])):
            _close(a, b, f"step {step} backward #{i}", rtol)
        assert len(ours["iterations"]) == len(official["iterations"]) == n_iters
        for t, (terms, off) in enumerate(zip(ours["iterations"], official["iterations"])):
            mapped = {OURS_TO_OFFICIAL.get(k, k): v for k, v in terms.items() if k in OURS_TO_OFFICIAL or k in off}
            assert set(mapped) == set(off) - {"loss"}, (sorted(mapped), sorted(off))
            for k, v in mapped.items():
                _close(v, off[k], f"step {step} iteration {t} {k}", rtol)
        assert set(ours["d"]) == set(official["d"])
        for k, v in official["d"].items():
            _close(ours["d"][k], v, f"step {step} {k}", rtol)
        # the encoder's update (and BatchNorm statistics: one encoder pass per official pass) and D's update
        after = {"encoder": {k: v.detach() for k, v in coach.encoder.state_dict().items()}}
        moved = _updates_close(before["encoder"], ours["after"]["encoder"], after["encoder"], f"step {step} encoder",
                               rtol)
        assert moved > 0
        # the weights move exactly at the official optimizer steps (BatchNorm statistics move every batch)
        still = [k for k in params if torch.equal(before["encoder"][k], ours["after"]["encoder"][k])]
        assert (len(still) < len(params)) == official["stepped"], (step, ours["batch_idx"], len(still))
        if coach.e4e:
            after["discriminator"] = {k: v.detach() for k, v in coach.D.state_dict().items()}
            _updates_close(before["discriminator"], ours["after"]["discriminator"], after["discriminator"],
                           f"step {step} discriminator", rtol)
        before = ours["after"]
        with torch.no_grad():  # continue both from our weights, so step 1 compares one step's update again
            coach.encoder.load_state_dict(before["encoder"])
            coach.ranger.params = [p.detach().clone() for p in coach.encoder.parameters()]
            if coach.e4e:
                coach.D.load_state_dict(before["discriminator"])


def _settings(kind: str, n_iters: int) -> tuple[list[str], list[int] | None]:
    extra, progressive = [], None
    if kind.startswith("restyle"):
        extra.append(f"encoder.num_iters={n_iters}")
    if kind in ("e4e", "restyle_e4e"):
        # the official schedule with deltas from step 0, one more each step: stage 1 at step 0, stage 2 at step 1
        # (scripts/train.py setup_progressive_steps: [0] + one entry per delta, num_ws entries in all)
        extra += ["module.progressive_start=0", "module.progressive_step_every=1"]
        progressive = [0] + list(range(0, 9))
    return extra, progressive


PAPER = [("psp_ffhq", "psp", 1), ("e4e_ffhq", "e4e", 1), ("restyle_psp_ffhq", "restyle_psp", 3),
         ("restyle_e4e_ffhq", "restyle_e4e", 3)]


@pytest.mark.parametrize("experiment,kind,n_iters", PAPER)
def test_training_steps_replay_the_official_trainer(tmp_path, monkeypatch, experiment, kind, n_iters):
    extra, progressive = _settings(kind, n_iters)
    rec = _run_and_record(tmp_path, experiment, extra, monkeypatch)
    cfg = rec["cfg"]
    # the experiment carries the official settings
    assert cfg.optimizer.lr == OFFICIAL["lr"] and cfg.optimizer.eps == 1e-5 and cfg.module.noise_mode == "random"
    assert cfg.loss.l2.weight == OFFICIAL["l2"] and cfg.loss.id.weight == OFFICIAL["id"]
    assert cfg.loss.lpips.weight in (OFFICIAL["lpips"], 0)  # 0 only without ../shared's AlexNet weights
    if progressive is not None:
        assert len(progressive) == rec["module"].inverter.num_ws
        m = cfg.module
        assert (m.adv_weight, m.d_lr, m.r1_gamma, m.d_reg_every, m.delta_reg_weight) == (
            OFFICIAL["w_disc"], OFFICIAL["d_lr"], OFFICIAL["r1"], OFFICIAL["d_reg_every"], OFFICIAL["delta_lambda"])
    _replay(rec, kind, n_iters, progressive)
    # the logs are the official loss_dict of the last iteration (ReStyle: not a sum over iterations)
    import csv

    with open(tmp_path / "run" / "csv" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == [0, 1]
    for row, step in zip(rows, rec["steps"]):
        _close(float(row["train/loss"]), step["backward"][-1], "logged train/loss")
        last = step["iterations"][-1]
        for ours, official in OURS_TO_OFFICIAL.items():
            if ours in last:
                _close(float(row[f"train/{official}"]), last[ours], f"logged train/{official}")
        _close(float(row["train/id_improve"]), last["id_improve"], "logged train/id_improve")


@pytest.mark.parametrize("experiment,kind,n_iters,switch", [
    ("psp_ffhq", "psp", 1, "module.noise_mode=const"),  # our old fixed training noise
    ("restyle_e4e_ffhq", "restyle_e4e", 2, "module.d_fake_codes=final_ws"),  # D fed the final ws
    ("restyle_e4e_ffhq", "restyle_e4e", 2, "module.adv_every_iteration=false"),  # adversarial term at the end only
])
def test_the_non_official_switches_are_caught_by_the_replay(tmp_path, monkeypatch, experiment, kind, n_iters, switch):
    """The replay is sharp: each documented non-official switch (the old behaviour) makes it fail."""
    extra, progressive = _settings(kind, n_iters)
    rec = _run_and_record(tmp_path, experiment, [*extra, switch], monkeypatch)
    with pytest.raises(AssertionError):
        _replay(rec, kind, n_iters, progressive)


# ----------------------------------------------------------------------------------------------- stylegan3-editing
SG3_EXPERIMENTS = [("restyle_psp_sg3_ffhq", "restyle_psp"), ("restyle_e4e_sg3_ffhq", "restyle_e4e")]


@pytest.mark.parametrize("experiment,kind", SG3_EXPERIMENTS)
def test_the_stylegan3_experiments_carry_the_stylegan3_editing_settings(tmp_path, experiment, kind):
    """README train_restyle_{psp,e4e}.py commands and TrainOptions / e4eTrainOptions defaults (36ce2b4)."""
    from test_train import _cfg

    cfg = _cfg(tmp_path, f"experiment={experiment}")
    from omegaconf import OmegaConf

    assert OmegaConf.to_container(cfg.generator)["path"] == "${paths.stylegan3_r_ffhq}" and cfg.generator.num_ws == 16
    assert cfg.data.batch_size == 2 and cfg.module.accumulate_grad_batches == 8 // cfg.data.batch_size
    assert cfg.encoder.num_iters == 3 and cfg.encoder.net.input_size == 256
    assert cfg.optimizer.lr == OFFICIAL["lr"] and cfg.optimizer._target_.endswith("Ranger")
    assert (cfg.loss.l2.weight, cfg.loss.lpips.weight, cfg.loss.id.weight) == (1.0, 0.8, 0.1)
    assert cfg.trainer.max_steps == 500000
    if kind == "restyle_e4e":
        m = cfg.module
        assert m.progressive_start is None  # no progressive training: all deltas, no delta regularisation
        assert (m.adv_weight, m.d_lr, m.r1_gamma, m.d_reg_every, m.pool_size) == (0.1, 2e-5, 10.0, 16, 50)
        assert cfg.trainer.val_check_interval == 1000
    else:
        assert cfg.trainer.val_check_interval == 5000 and cfg.callbacks.checkpoint.every_n_train_steps == 10000


@pytest.mark.parametrize("experiment,kind", SG3_EXPERIMENTS)
def test_stylegan3_training_steps_replay_the_stylegan3_editing_coach(tmp_path, monkeypatch, experiment, kind):
    """Their coach_restyle_{psp,e4e}.py over a tiny StyleGAN3-R, five batches over two epochs of four, the
    gradients of 2 batches summed (theirs: int(8 / batch_size) = 4): optimizer steps after batches 0 and 2 of epoch 0;
    batch 3's gradients dropped by the zero_grad at the epoch start; batch 0 of epoch 1 steps alone. e4e: D steps
    every batch, R1 every 3 batches of global_step (which counts batches), all 16 layers discriminated, no delta
    terms."""
    n_iters, every, d_reg = 2, 2, 3
    extra = [f"encoder.num_iters={n_iters}", f"module.accumulate_grad_batches={every}", "trainer.max_steps=5"]
    if kind == "restyle_e4e":
        extra.append(f"module.d_reg_every={d_reg}")
    rec = _run_and_record(tmp_path, experiment, extra, monkeypatch, sg3=True, images=8)
    assert [s["batch_idx"] for s in rec["steps"]] == [0, 1, 2, 3, 0]
    assert rec["module"].global_step == 5
    _replay(rec, kind, n_iters, None, num_steps=5, sg3=True, accumulate=every, d_reg_every=d_reg)
    if kind == "restyle_e4e":
        assert ["discriminator_r1_loss" in s["d"] for s in rec["steps"]] == [True, False, False, True, False]
        assert not any(k.startswith("delta") for s in rec["steps"] for it in s["iterations"] for k in it)


# ----------------------------------------------------------------------------------------------- pSp's tasks
CROP = (35, 223, 32, 220)  # pSp's lpips_crop / l2_crop box at 256 px
TASKS = {  # experiment: (README lambdas, loss size)
    "psp_frontalize": (dict(lpips=0.08, l2=0.001, id=1.0, w_norm=0.005, lpips_crop=0.8, l2_crop=0.01), 64),
    "psp_super_resolution": (dict(lpips=0.8, l2=1.0, id=0.1, w_norm=0.005), SIZE),
    "psp_sketch_to_face": (dict(lpips=0.8, l2=1.0, id=0.0, w_norm=0.005), SIZE),
    "psp_seg_to_face": (dict(lpips=0.8, l2=1.0, id=0.0, w_norm=0.005), SIZE),
}


def _task_overrides(tmp_path: Path, experiment: str, size: int) -> list[str]:
    """The task's source at the tiny size: sketches named <stem>_edges (written here), source transforms at ``size``,
    down-sampling factors a small image takes, the crop box scaled from 256 px."""
    import numpy as np
    from PIL import Image

    out = []
    for split in ("train", "val"):
        key = f"data.{split}.source_transform"
        if experiment == "psp_frontalize":
            out.append(f"{key}.transforms.0.size=[{size},{size}]")
        elif experiment == "psp_super_resolution":
            out += [f"{key}.transforms.0.size=[{size},{size}]", f"{key}.transforms.1.factors=[1,2,4]",
                    f"{key}.transforms.2.size=[{size},{size}]"]
        else:
            out.append(f"{key}.size=[{size},{size}]")
    if experiment == "psp_sketch_to_face":
        sketches = tmp_path / "sketches"
        sketches.mkdir()
        rng = np.random.default_rng(3)
        for i in range(4):  # the ids of _experiment_files' folder
            Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8), mode="L").save(
                sketches / f"{i:05d}_edges.png")
        out.append(f"paths.celebahq_sketch_root={sketches}")
    if experiment == "psp_seg_to_face":  # CelebAMask-HQ index maps named like the images, classes 0..18
        segs = tmp_path / "segs"
        segs.mkdir()
        rng = np.random.default_rng(4)
        for i in range(4):
            Image.fromarray(rng.integers(0, 19, (40, 40), dtype=np.uint8), mode="L").save(segs / f"{i:05d}.png")
        out.append(f"paths.celebahq_seg_root={segs}")
    if experiment == "psp_frontalize":
        box = [round(v * size / 256) for v in CROP]
        out += [f"loss.lpips_crop.crop={box}".replace(" ", ""), f"loss.l2_crop.crop={box}".replace(" ", "")]
        alex = Path(os.environ.get("INVERSION_SHARED", REPO.parent / "shared")) / "weights"
        if not (alex / "alexnet_features_imagenet.pth").is_file():
            out.append("loss.lpips_crop.weight=0")
    return out


@pytest.mark.parametrize("experiment", list(TASKS))
def test_psp_task_training_steps_replay_the_official_coach(tmp_path, monkeypatch, experiment):
    """pSp's coach on (source, target) pairs: the encoder reads the source (a photo flipped on its own coin, a
    down-sampled one, a 1-channel sketch), the losses compare with the target; the README's task lambdas, w-norm
    against latent_avg, LPIPS / L2 on the face crop, id_improve over <y, x> with x the source."""
    from test_train import _cfg

    lambdas, size = TASKS[experiment]
    official = _cfg(tmp_path / "composed", f"experiment={experiment}")  # the experiment as written
    for name, value in lambdas.items():
        assert (official.loss[name].weight if name in official.loss else 0) == value, name
    if "lpips_crop" in lambdas:
        assert tuple(official.loss.lpips_crop.crop) == tuple(official.loss.l2_crop.crop) == CROP
    rec = _run_and_record(tmp_path, experiment, _task_overrides(tmp_path, experiment, size), monkeypatch, size=size)
    cfg = rec["cfg"]
    assert all(s["source"] is not None and not torch.equal(s["source"], s["x"]) for s in rec["steps"]) or (
        experiment == "psp_frontalize")  # a frontalization source is the target when both coins agree
    run = {k: (cfg.loss[k].weight if k in cfg.loss else 0) for k in lambdas}  # lpips 0 without ../shared's AlexNet
    crop = tuple(cfg.loss.l2_crop.crop) if "l2_crop" in cfg.loss else None
    _replay(rec, "psp", 1, None, lambdas=run, size=size, crop=crop)


def test_the_toonify_experiment_is_inversion_against_the_toonify_generator(tmp_path):
    """pSp README: "trained exactly like the StyleGAN inversion task" with ID 1 and w-norm 0.025, the blended
    FFHQ / cartoon generator, best after ~6000 steps (the step itself is psp_ffhq's, replayed above)."""
    from omegaconf import OmegaConf
    from test_train import _cfg

    toon, psp = _cfg(tmp_path / "t", "experiment=psp_toonify"), _cfg(tmp_path / "p", "experiment=psp_ffhq")
    assert OmegaConf.to_container(toon.generator, resolve=False)["path"] == "${paths.stylegan2_toonify}"
    assert (toon.loss.id.weight, toon.loss.w_norm.weight, toon.trainer.max_steps) == (1.0, 0.025, 6000)
    assert (toon.loss.l2.weight, toon.loss.lpips.weight) == (1.0, 0.8)
    assert toon.data == psp.data and toon.encoder == psp.encoder and toon.optimizer == psp.optimizer
