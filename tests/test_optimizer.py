"""conf/optimizer/ranger.yaml (pytorch_optimizer.Ranger) follows the Ranger of pSp / e4e / ReStyle step by step."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]


class _ReferenceRanger:
    """The equations of pSp's training/ranger.py (lessw2020 Ranger 20.4.11), written out as a test oracle:
    gradient centralization (dim > 1), Adam moments, RAdam rectification once N_sma > 5 (before that an
    SGD-with-momentum step of lr / (1 - beta1^t)), Lookahead every k steps with alpha."""

    def __init__(self, params, lr, betas=(0.95, 0.999), eps=6.1e-5, alpha=0.5, k=6, threshold=5):
        self.params = [p.detach().clone() for p in params]
        self.slow = [p.clone() for p in self.params]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.lr, self.betas, self.eps, self.alpha, self.k, self.threshold = lr, betas, eps, alpha, k, threshold
        self.t = 0

    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        b2t = b2**self.t
        n_sma_max = 2 / (1 - b2) - 1
        n_sma = n_sma_max - 2 * self.t * b2t / (1 - b2t)
        rectified = n_sma > self.threshold
        if rectified:
            r = math.sqrt((1 - b2t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma * n_sma_max / (n_sma_max - 2))
        step = (r if rectified else 1.0) / (1 - b1**self.t)
        for i, g in enumerate(grads):
            g = g.clone()
            if g.dim() > 1:
                g -= g.mean(dim=tuple(range(1, g.dim())), keepdim=True)
            self.v[i] = self.v[i] * b2 + (1 - b2) * g * g
            self.m[i] = self.m[i] * b1 + (1 - b1) * g
            if rectified:
                self.params[i] = self.params[i] - step * self.lr * self.m[i] / (self.v[i].sqrt() + self.eps)
            else:
                self.params[i] = self.params[i] - step * self.lr * self.m[i]
            if self.t % self.k == 0:
                self.slow[i] = self.slow[i] + self.alpha * (self.params[i] - self.slow[i])
                self.params[i] = self.slow[i].clone()


def test_ranger_config_matches_the_official_equations():
    torch.manual_seed(0)
    conv, fc, bias = torch.randn(4, 3, 3, 3), torch.randn(5, 6), torch.randn(5)
    params = [torch.nn.Parameter(t.clone()) for t in (conv, fc, bias)]
    cfg = OmegaConf.load(REPO / "conf" / "optimizer" / "ranger.yaml")
    cfg.lr = 1e-2
    opt = instantiate(cfg)(params)
    ref = _ReferenceRanger(params, lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(14):  # SGD steps, the switch to rectified steps (t = 6), two Lookahead syncs (t = 6, 12)
        grads = [torch.randn(p.shape, generator=gen) for p in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        ref.step(grads)
        for p, r in zip(params, ref.params):
            torch.testing.assert_close(p.detach(), r, rtol=1e-5, atol=1e-6)
    assert not torch.equal(params[0].detach(), conv)


def test_paper_experiments_use_ranger():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for name in ("psp_ffhq", "e4e_ffhq", "restyle_psp_ffhq", "restyle_e4e_ffhq"):
            cfg = compose(config_name="train", overrides=[f"experiment={name}"])
            assert cfg.optimizer._target_ == "pytorch_optimizer.Ranger" and cfg.optimizer.lr == 1e-4, name
        assert compose(config_name="train").optimizer._target_ == "torch.optim.Adam"  # the demo keeps Adam
