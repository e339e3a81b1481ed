"""conf/optimizer/ranger.yaml (inversion.training.Ranger) follows the Ranger of pSp / e4e / ReStyle step by step."""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("psp_ffhq", "e4e_ffhq", "restyle_psp_ffhq", "restyle_e4e_ffhq")


class _ReferenceRanger:
    """The equations of pSp's training/ranger.py (lessw2020 Ranger 20.4.11), written out as a test oracle.

    Per parameter, from its first gradient on (a parameter whose gradient is None is skipped and its count does not
    advance): gradient centralization (dim > 1), Adam moments, RAdam rectification once N_sma > 5 (before that an
    SGD-with-momentum step of lr / (1 - beta1^t)), Lookahead every k of its own steps with alpha.
    """

    def __init__(self, params, lr, betas=(0.95, 0.999), eps=1e-5, alpha=0.5, k=6, threshold=5):
        self.params = [p.detach().clone().to(torch.promote_types(p.dtype, torch.float32)) for p in params]
        self.state: list[dict | None] = [None] * len(self.params)
        self.lr, self.betas, self.eps, self.alpha, self.k, self.threshold = lr, betas, eps, alpha, k, threshold

    def step(self, grads):
        b1, b2 = self.betas
        for i, g in enumerate(grads):
            if g is None:
                continue
            if self.state[i] is None:
                z = torch.zeros_like(self.params[i])
                self.state[i] = {"t": 0, "m": z, "v": z.clone(), "slow": self.params[i].clone()}
            s = self.state[i]
            s["t"] += 1
            t = s["t"]
            b2t = b2**t
            n_sma_max = 2 / (1 - b2) - 1
            n_sma = n_sma_max - 2 * t * b2t / (1 - b2t)
            rectified = n_sma > self.threshold
            if rectified:
                r = (1 - b2t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma * n_sma_max / (n_sma_max - 2)
            step = (math.sqrt(r) if rectified else 1.0) / (1 - b1**t)
            g = g.to(self.params[i].dtype).clone()
            if g.dim() > 1:
                g = g - g.mean(dim=tuple(range(1, g.dim())), keepdim=True)
            s["v"] = s["v"] * b2 + (1 - b2) * g * g
            s["m"] = s["m"] * b1 + (1 - b1) * g
            if rectified:
                self.params[i] = self.params[i] - step * self.lr * s["m"] / (s["v"].sqrt() + self.eps)
            else:
                self.params[i] = self.params[i] - step * self.lr * s["m"]
            if t % self.k == 0:
                s["slow"] = s["slow"] + self.alpha * (self.params[i] - s["slow"])
                self.params[i] = s["slow"].clone()


def _config_optimizer(params, lr=1e-2):
    cfg = OmegaConf.load(REPO / "conf" / "optimizer" / "ranger.yaml")
    cfg.lr = lr
    return instantiate(cfg)(params)


def _set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.clone()


def test_ranger_config_matches_the_official_equations():
    torch.manual_seed(0)
    conv, fc, bias = torch.randn(4, 3, 3, 3), torch.randn(5, 6), torch.randn(5)
    params = [torch.nn.Parameter(t.clone()) for t in (conv, fc, bias)]
    opt = _config_optimizer(params)
    ref = _ReferenceRanger(params, lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    scales = (1.0, 1.0, 1e-3)  # a bias with small gradients, where eps shows
    for _ in range(14):  # SGD steps, the switch to rectified steps (t = 6), two Lookahead syncs (t = 6, 12)
        grads = [s * torch.randn(p.shape, generator=gen) for p, s in zip(params, scales)]
        _set_grads(params, grads)
        opt.step()
        ref.step(grads)
        for p, r in zip(params, ref.params):
            torch.testing.assert_close(p.detach(), r, rtol=1e-5, atol=1e-7)
    assert not torch.equal(params[0].detach(), conv)


def test_ranger_eps_is_the_official_default():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for name in EXPERIMENTS:
            assert compose(config_name="train", overrides=[f"experiment={name}"]).optimizer.eps == 1e-5, name
    # numerically: with gradients about eps in size the rectified update is about m / (sqrt(v) + eps)
    x0 = torch.randn(64, generator=torch.Generator().manual_seed(2))
    p = torch.nn.Parameter(x0.clone())
    opt = _config_optimizer([p])
    ref, ref_wrong = _ReferenceRanger([p], lr=1e-2), _ReferenceRanger([p], lr=1e-2, eps=6.1e-5)
    gen = torch.Generator().manual_seed(3)
    for _ in range(8):
        g = 1e-5 * (1 + torch.rand(64, generator=gen))
        _set_grads([p], [g])
        opt.step()
        ref.step([g])
        ref_wrong.step([g])
    torch.testing.assert_close(p.detach(), ref.params[0], rtol=1e-5, atol=1e-7)
    assert not torch.allclose(p.detach(), ref_wrong.params[0], rtol=1e-5, atol=1e-7)


def test_ranger_warms_up_each_parameter_on_its_own():
    """A layer that first gets gradients at a later stage (e4e's style heads) starts at its own step 1."""
    gen = torch.Generator().manual_seed(4)
    a0, b0 = torch.randn(5, 6, generator=gen), torch.randn(4, 3, 3, 3, generator=gen)
    a, b = torch.nn.Parameter(a0.clone()), torch.nn.Parameter(b0.clone())
    opt = _config_optimizer([a, b])
    ref = _ReferenceRanger([a, b], lr=1e-2)
    for _ in range(20):  # B is not used yet: its grad stays None
        grads = [torch.randn(a.shape, generator=gen), None]
        _set_grads([a, b], grads)
        opt.step()
        ref.step(grads)
    torch.testing.assert_close(b.detach(), b0, rtol=0, atol=0)
    for step in range(1, 7):
        grads = [torch.randn(a.shape, generator=gen), torch.randn(b.shape, generator=gen)]
        _set_grads([a, b], grads)
        before = b.detach().clone()
        opt.step()
        ref.step(grads)
        torch.testing.assert_close(a.detach(), ref.params[0], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(b.detach(), ref.params[1], rtol=1e-5, atol=1e-7)
        if step == 1:  # B's first update: an SGD-with-momentum step, lr * (centralized) grad, no rectification
            g = grads[1] - grads[1].mean(dim=(1, 2, 3), keepdim=True)
            torch.testing.assert_close(before - b.detach(), 1e-2 * g, rtol=1e-5, atol=1e-7)
            assert opt.state[a]["step"] == 21 and opt.state[b]["step"] == 1
        slow = opt.state[b]["slow_buffer"]
        if step < 6:  # B's Lookahead waits for B's own 6th step (A's 26th, not a multiple of 6)
            torch.testing.assert_close(slow, b0, rtol=0, atol=0)
        else:
            assert not torch.equal(slow, b0)
            torch.testing.assert_close(b.detach(), slow, rtol=0, atol=0)
    assert opt.state[a]["step"] == 26 and opt.state[b]["step"] == 6


def test_ranger_state_dict_round_trip_resumes_exactly():
    """7 steps, save, a fresh optimizer loads, 7 more steps == 14 uninterrupted steps (also for a bf16 param)."""
    gen = torch.Generator().manual_seed(5)
    init = [torch.randn(4, 3, 3, 3, generator=gen), torch.randn(5, 6, generator=gen), torch.randn(7, generator=gen)]
    dtypes = (torch.float32, torch.float32, torch.bfloat16)
    schedule = []
    for t in range(14):  # the linear weight starts late (t = 3), so the parameters sit at different steps
        schedule.append([torch.randn(x.shape, generator=gen) if i != 1 or t >= 3 else None for i, x in enumerate(init)])

    def fresh():
        return [torch.nn.Parameter(x.clone().to(d)) for x, d in zip(init, dtypes)]

    def run(params, opt, steps):
        for grads in steps:
            _set_grads(params, [None if g is None else g.to(p.dtype) for p, g in zip(params, grads)])
            opt.step()

    full = fresh()
    opt_full = _config_optimizer(full)
    run(full, opt_full, schedule)
    ref = _ReferenceRanger(init[:2], lr=1e-2)
    for grads in schedule:
        ref.step(grads[:2])
    for p, r in zip(full[:2], ref.params):
        torch.testing.assert_close(p.detach(), r, rtol=1e-5, atol=1e-7)

    first = fresh()
    opt_first = _config_optimizer(first)
    run(first, opt_first, schedule[:7])
    buf = io.BytesIO()
    torch.save({"params": [p.detach() for p in first], "opt": opt_first.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    resumed = [torch.nn.Parameter(x.clone()) for x in saved["params"]]
    opt_resumed = _config_optimizer(resumed)
    opt_resumed.load_state_dict(copy.deepcopy(saved["opt"]))
    assert [opt_resumed.state[p]["step"] for p in resumed] == [7, 4, 7]
    assert opt_resumed.state[resumed[2]]["exp_avg"].dtype == torch.float32  # fp32 moments for the bf16 param
    run(resumed, opt_resumed, schedule[7:])
    for p, q in zip(resumed, full):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=0)


def test_paper_experiments_use_ranger():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for name in EXPERIMENTS:
            cfg = compose(config_name="train", overrides=[f"experiment={name}"])
            assert cfg.optimizer._target_ == "inversion.training.Ranger" and cfg.optimizer.lr == 1e-4, name
        assert compose(config_name="train").optimizer._target_ == "torch.optim.Adam"  # the demo keeps Adam
