"""Pivotal tuning (inversion.refine.tuning): batched per-image generator deltas, exact freezing, frozen G."""

from __future__ import annotations

import pytest
import torch

from inversion.losses import MSELoss
from inversion.refine import refine, tune_generator, tuned_parameter_names

from helpers import tiny_generator

MSE = {"mse": (1.0, MSELoss())}
KW = dict(lr=1e-2, losses=MSE, threshold=None)


def _problem(n=3, arch="stylegan2"):
    """Pivots of one tiny generator and targets from another (not exactly reproducible)."""
    if arch == "stylegan3":
        from inversion.models import demo_stylegan3

        G, other = (demo_stylegan3(img_resolution=32, channel_max=16, seed=s) for s in (0, 5))
    else:
        G, other = tiny_generator(32, seed=0), tiny_generator(32, seed=5)
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return G, G.mapping(z), other.synthesis(other.mapping(z))


@pytest.mark.parametrize("arch", ["stylegan2", "stylegan3"])
def test_batched_equals_one_at_a_time(arch):
    G, ws, target = _problem(arch=arch)
    kw = dict(KW, num_steps=6, threshold=0.5 if arch == "stylegan2" else 0.0016)  # some images stop early
    batched = tune_generator(G, target, ws, **kw)
    assert (batched.steps_taken < 6).any() and (batched.steps_taken == 6).any(), batched.steps_taken
    for i in range(3):
        single = tune_generator(G, target[i : i + 1], ws[i : i + 1], **kw)
        assert single.steps_taken[0] == batched.steps_taken[i]
        for name, d in batched.deltas.items():
            # float32 rounding of batched vs single convolutions, amplified by Adam where gradients are ~0: a few
            # 1e-6 on deltas of ~1e-2 (measured up to 4e-6 with one thread)
            assert torch.allclose(d[i], single.deltas[name][0], rtol=1e-4, atol=2e-5), name
        assert torch.allclose(batched.images[i], single.images[0], atol=1e-5)
        assert torch.allclose(batched.curves["mse"][-1, i], single.curves["mse"][-1, 0], rtol=1e-5)


def test_low_rank_deltas():
    G, ws, target = _problem(2)
    with torch.no_grad():
        pivot_images = G.synthesis(ws)
    start = tune_generator(G, target, ws, num_steps=0, rank=2, **KW)
    assert torch.equal(start.images, tune_generator(G, target, ws, num_steps=0, **KW).images)  # U = 0: zero deltas
    assert torch.allclose(start.images, pivot_images, atol=1e-5)  # the pivot's image (vmap's conv path: round-off)
    r = tune_generator(G, target, ws, num_steps=5, rank=2, **KW)
    assert r.rank == 2
    for name in tuned_parameter_names(G):
        d = r.delta(name)  # [B, rows, cols] (matrices) or [B, *shape]
        if name + ".U" in r.deltas:
            assert r.deltas[name + ".U"].shape[-1] == 2
            assert all(int(torch.linalg.matrix_rank(m)) <= 2 for m in d), name
        else:
            assert name in r.deltas and d.shape[1:] == dict(G.named_parameters())[name].shape
    assert r.deltas["convs.0.conv.weight.U"].abs().sum() > 0  # the factors did move
    assert (r.curves["mse"][-1] < r.curves["mse"][0]).all()
    assert torch.allclose(r.render(G), r.images, atol=1e-6)


def test_tuning_beats_latent_refinement():
    G, ws, target = _problem()
    steps = 20
    latent = refine(G, target, ws_init=ws, space="w+", num_steps=steps, lr=0.05, lr_rampup=0.0, lr_rampdown=0.0,
                    losses=MSE)
    tuned = tune_generator(G, target, ws, num_steps=steps, **KW)
    err_latent = (latent.images - target).square().flatten(1).mean(1)
    err_tuned = (tuned.images - target).square().flatten(1).mean(1)
    assert torch.allclose(err_tuned, tuned.curves["mse"][-1], rtol=1e-5)
    assert (err_tuned < 0.5 * err_latent).all(), (err_tuned, err_latent)
    full = tune_generator(G, target, ws, num_steps=0, **KW)
    assert (err_tuned < 0.2 * full.curves["mse"][0]).all()


def test_generator_untouched_and_threshold_stops():
    G, ws, target = _problem()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    flags = [p.requires_grad for p in G.parameters()]
    kw = dict(KW, num_steps=12, threshold=0.3)
    r = tune_generator(G, target, ws, **kw)
    after = G.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert flags == [p.requires_grad for p in G.parameters()]
    steps = r.steps_taken
    assert (steps < 12).any() and (r.curves["mse"][-1][steps < 12] <= 0.3).all(), (steps, r.curves["mse"][-1])
    for i in (steps < 12).nonzero().flatten().tolist():  # a stopped image is what a run of that length returns
        short = tune_generator(G, target[i : i + 1], ws[i : i + 1], **dict(kw, num_steps=int(steps[i]), threshold=None))
        assert torch.allclose(short.images[0], r.images[i], atol=1e-5)
        assert r.curves["mse"][int(steps[i]) - 1, i] > 0.3  # it had not stopped one step earlier
    tuned = r.tuned_generator(G, 0)  # a plain Generator with image 0's deltas
    with torch.no_grad():
        assert torch.allclose(tuned.synthesis(ws[:1]), r.images[:1], atol=1e-5)


def test_threshold_watches_the_lpips_term():
    from inversion.losses import LPIPSLoss

    G, ws, target = _problem(2)
    torch.manual_seed(0)
    losses = {"mse": (1.0, MSELoss()), "lpips": (1.0, LPIPSLoss(net="alex"))}  # random LPIPS weights
    probe = tune_generator(G, target, ws, num_steps=0, losses=losses, threshold=None)
    lpips0, total0 = probe.curves["lpips"][0], probe.curves["total"][0]
    assert (total0 > lpips0).all()
    threshold = float(lpips0.max())  # reached by LPIPS at step 0, not by the total
    assert (total0 > threshold).all()
    r = tune_generator(G, target, ws, num_steps=3, losses=losses, threshold=threshold)
    assert r.steps_taken.tolist() == [0, 0] and r.logged_steps == [0]
    assert all(d.abs().max() == 0 for d in r.deltas.values())


@pytest.mark.parametrize("arch", ["stylegan2", "stylegan3"])
def test_one_image_is_plain_adam_on_a_copy_of_the_synthesis_parameters(arch):
    """The official PTI step for one image: Adam(lr) on every synthesis parameter of a copy of G, MSE to the target,
    the pivot fixed. tune_generator's deltas are that copy's parameters minus G's (StyleGAN3: its synthesis.*)."""
    import copy

    G, ws, target = _problem(1, arch)
    steps, lr = 4, 1e-2
    ours = tune_generator(G, target, ws, num_steps=steps, **dict(KW, lr=lr))
    ref = copy.deepcopy(G).requires_grad_(False)
    names = tuned_parameter_names(G)
    params = dict(ref.named_parameters())
    for n in names:
        params[n].requires_grad_(True)
    opt = torch.optim.Adam([params[n] for n in names], lr=lr)
    for _ in range(steps):
        loss = MSELoss()(ref.synthesis(ws, noise_mode="const"), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    base = dict(G.named_parameters())
    for n in names:
        # float32 rounding of vmap'd vs plain convolutions, amplified by Adam where a gradient is ~0: measured up to
        # 1.6e-6 (StyleGAN3, 2 threads) on deltas up to 4e-2; a procedural difference is ~1e-3 or more
        torch.testing.assert_close(ours.delta(n)[0].reshape(base[n].shape), (params[n] - base[n]).detach(),
                                   rtol=1e-4, atol=1e-5, msg=n)
