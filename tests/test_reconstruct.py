"""inversion.reconstruct: the one "invert, then optionally refine" step gives exactly what calling the inverter and
the refiner directly gives (what evaluate.py and invert_images computed before they shared it)."""

from __future__ import annotations

import pytest
import torch

from inversion import encoders as E
from inversion.inverter import Inverter
from inversion.losses import MSELoss
from inversion.reconstruct import reconstruct, refine_latents
from inversion.refine import Refiner

from helpers import tiny_generator


@pytest.fixture(scope="module")
def inverter() -> Inverter:
    G = tiny_generator(32)
    torch.manual_seed(0)
    enc = E.BackboneEncoder(num_ws=G.num_ws, w_dim=G.w_dim, input_size=32, channels=[16, 16, 32, 32]).eval()
    return Inverter(encoder=enc, generator=G, num_iters=2, residual=True, encoder_size=32).eval()


def _batch(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _refiner(num_steps: int = 4) -> Refiner:
    return Refiner(losses={"mse": (1.0, MSELoss())}, num_steps=num_steps, lr=0.05).eval()


def test_without_a_refiner_it_is_the_inverters_result(inverter):
    x = _batch()
    rec = reconstruct(inverter, x, num_iters=2)
    with torch.no_grad():
        direct = inverter.invert(x, num_iters=2)
    assert len(rec.encoder.steps) == 2 and rec.refined == {} and rec.refine_seconds == {}
    for a, b in zip(rec.encoder.steps, direct.steps):
        assert torch.equal(a.ws, b.ws) and torch.equal(a.images, b.images)
    assert rec.ws is rec.encoder.ws and rec.images is rec.encoder.images and rec.invert_seconds > 0
    assert not rec.encoder.ws.requires_grad


def test_with_a_refiner_it_is_invert_then_refine_from_each_seed(inverter):
    x, target = _batch(), _batch(seed=2)
    refiner = _refiner()
    rec = reconstruct(inverter, x, target=target, refiner=refiner, seeds=("encoder", "mean"), snapshot_steps=[0, 2, 4])
    with torch.no_grad():
        encoded = inverter.invert(x)
    direct = {"encoder": refiner(inverter.generator, target, ws_init=encoded.ws, snapshot_steps=[0, 2, 4],
                                 noise_mode="const"),
              "mean": refiner(inverter.generator, target, ws_init=None, snapshot_steps=[0, 2, 4], noise_mode="const")}
    assert list(rec.refined) == ["encoder", "mean"] and list(rec.refine_seconds) == ["encoder", "mean"]
    for seed, result in direct.items():
        assert torch.equal(rec.refined[seed].ws, result.ws) and torch.equal(rec.refined[seed].images, result.images)
        assert [s.step for s in rec.refined[seed].snapshots] == [0, 2, 4]
        for a, b in zip(rec.refined[seed].snapshots, result.snapshots):
            assert torch.equal(a.ws, b.ws)
    assert torch.equal(rec.refined["encoder"].snapshots[0].ws, encoded.ws)  # step 0 is the encoder's result
    assert rec.ws is rec.refined["encoder"].ws  # the final result: the first seed's refinement
    assert (rec.refined["encoder"].curves["recon"][-1] < rec.refined["encoder"].curves["recon"][0]).all()


def test_refine_latents_runs_under_no_grad_and_checks_its_seed(inverter):
    target, ws = _batch(2, seed=3), inverter.latent_avg[None].expand(2, -1, -1).clone()
    refiner = _refiner(num_steps=2)
    with torch.no_grad():  # a caller's grad mode does not switch the optimization off
        result = refine_latents(refiner, inverter.generator, target, ws, num_steps=1)
    assert result.logged_steps[-1] == 1
    direct = refiner(inverter.generator, target, ws_init=ws, num_steps=1)
    assert torch.equal(result.ws, direct.ws)
    with pytest.raises(ValueError, match="refine seed 'random'"):
        refine_latents(refiner, inverter.generator, target, ws, seed="random")
    with pytest.raises(ValueError, match="needs the encoder's ws"):
        refine_latents(refiner, inverter.generator, target, None)
    with pytest.raises(ValueError, match="needs the target images"):
        reconstruct(inverter, _batch(2), refiner=refiner)
