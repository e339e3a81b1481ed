"""Pivotal tuning as a refinement (issue 18): the demo generator, full-rank = full deltas, locality, snapshots,
compact files, edits on tuned results, conf/refine/pti through build_refiner."""

from __future__ import annotations

import math

import pytest
import torch

from inversion.config import compose
from inversion.losses import MSELoss
from inversion.models import demo_generator
from inversion.refine import (
    Tuner,
    build_refiner,
    load_tuned,
    refine,
    save_tuned,
    tune_generator,
    tuned_parameter_names,
)

from helpers import tiny_generator

MSE = {"mse": (1.0, MSELoss())}
KW = dict(lr=1e-2, losses=MSE, threshold=None)


def _problem(n=2, G=None):
    G = G or tiny_generator(32, seed=0)
    other = tiny_generator(G.img_resolution, seed=5, z_dim=G.z_dim, w_dim=G.w_dim)
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return G, G.mapping(z), other.synthesis(other.mapping(z))


def test_pti_on_the_demo_generator_beats_latent_refinement_and_leaves_it_untouched():
    """Demo generator (64 px), targets it cannot render exactly (photos of another generator), the same budget:
    every image ends with a lower error after tuning than after W+ refinement from the same pivot."""
    G = demo_generator()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        z = torch.randn(3, G.z_dim)
        with torch.no_grad():
            ws = G.mapping(z)
            target = G.synthesis(G.mapping(torch.randn(3, G.z_dim)))  # other faces: the pivots are far from them
    before = {k: v.clone() for k, v in G.state_dict().items()}
    steps = 15
    latent = refine(G, target, ws_init=ws, space="w+", num_steps=steps, lr=0.05, lr_rampup=0.0, lr_rampdown=0.0,
                    losses=MSE)
    tuned = tune_generator(G, target, ws, num_steps=steps, lr=3e-3, losses=MSE, threshold=None)
    err = lambda x: (x - target).square().flatten(1).mean(1)  # noqa: E731
    assert (err(tuned.images) < err(latent.images)).all(), (err(tuned.images), err(latent.images))
    after = G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_low_rank_with_full_rank_is_full_tuning():
    G, ws, target = _problem()
    full = tune_generator(G, target, ws, num_steps=4, **KW)
    big = max(min(p.shape[0] if p.ndim == 1 else [d for d in p.shape if d != 1][0], p[0].numel())
              for p in G.parameters())
    same = tune_generator(G, target, ws, num_steps=4, rank=big, **KW)
    assert set(same.kinds.values()) == {"full"} and same.deltas.keys() == full.deltas.keys()
    assert all(torch.equal(same.deltas[k], full.deltas[k]) for k in full.deltas)
    assert torch.equal(same.images, full.images)
    low = tune_generator(G, target, ws, num_steps=4, rank=1, **KW)
    assert "rank 1" in set(low.kinds.values())
    info_low, info_full = low.per_image()[0], full.per_image()[0]
    assert sum(info_low["deltas"]["bytes"].values()) < 0.5 * sum(info_full["deltas"]["bytes"].values())
    assert info_full["deltas"]["parameters"] == {"full": len(tuned_parameter_names(G))}
    assert info_full["steps_taken"] == 4 and not info_full["stopped_early"]


def test_locality_regulariser_keeps_other_codes_close_to_the_frozen_generator():
    G, ws, target = _problem()
    far = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(9)), truncation_psi=0.5)
    with torch.no_grad():
        frozen = G.synthesis(far, noise_mode="none")
    drift = {}
    for name, loc in (("off", None), ("on", {"l2_weight": 20.0, "lpips_weight": 0.0, "alpha": 2.0})):
        r = tune_generator(G, target, ws, num_steps=15, locality=loc, **KW)
        moved = torch.stack([r.render(G, far, noise_mode="none", index=i) for i in range(2)])
        drift[name] = (moved - frozen).square().mean()
        if loc:
            assert r.curves["locality"][0].abs().max() < 1e-9  # zero deltas: tuned = frozen (vmap round-off)
            assert (r.curves["locality"][-1] > 0).all()
            assert torch.allclose(r.curves["total"], r.curves["mse"] + r.curves["locality"], atol=1e-6)
    assert drift["on"] < 0.5 * drift["off"], drift
    with pytest.raises(ValueError, match="needs an LPIPS term"):
        tune_generator(G, target, ws, num_steps=1, locality={}, **KW)
    with pytest.raises(ValueError, match="unknown keys"):
        tune_generator(G, target, ws, num_steps=1, locality={"beta": 1}, **KW)


def test_snapshots_are_the_images_after_that_many_updates():
    G, ws, target = _problem()
    r = tune_generator(G, target, ws, num_steps=4, snapshot_steps=[0, 2, 4], **KW)
    assert [s.step for s in r.snapshots] == [0, 2, 4]
    for snap in r.snapshots:
        short = tune_generator(G, target, ws, num_steps=snap.step, **KW)
        assert torch.allclose(snap.render(G), short.images, atol=1e-6)


def test_compact_files_reload_and_render_identically(tmp_path):
    G, ws, target = _problem(3)
    r = tune_generator(G, target, ws, num_steps=3, rank=2, **KW)
    save_tuned(r, tmp_path / "all.pt", G, meta={"source": "x.png"})
    back = load_tuned(tmp_path / "all.pt", G)
    assert torch.equal(back.render(G), r.images)
    assert back.meta == {"source": "x.png"} and back.kinds == r.kinds and back.steps_taken.tolist() == [3, 3, 3]
    save_tuned(r, tmp_path / "one.pt", G, index=1)
    one = load_tuned(tmp_path / "one.pt", G)
    assert one.ws.shape[0] == 1 and torch.equal(one.render(G), r.render(G, r.ws[1:2], index=1))
    assert torch.allclose(one.render(G), r.images[1:2], atol=1e-6)  # batch of 1 vs 3: conv round-off only
    params = dict(G.named_parameters())
    assert (tmp_path / "one.pt").stat().st_size < sum(params[n].numel() * 4 for n in tuned_parameter_names(G))
    with pytest.raises(ValueError, match="different generator"):
        load_tuned(tmp_path / "one.pt", tiny_generator(32, seed=1))
    torch.save({"ws": ws}, tmp_path / "latents.pt")
    with pytest.raises(ValueError, match="not a tuned-result file"):
        load_tuned(tmp_path / "latents.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_tuned(tmp_path / "missing.pt")


def test_an_edit_changes_a_tuned_result_as_it_changes_the_pivot():
    G, ws, target = _problem()
    r = tune_generator(G, target, ws, num_steps=8, **dict(KW, lr=1e-3))  # error down by a third: a real fit
    assert (r.curves["mse"][-1] < 0.75 * r.curves["mse"][0]).all()
    direction = torch.randn(1, 1, G.w_dim, generator=torch.Generator().manual_seed(4)).expand(1, G.num_ws, -1)
    for i in range(2):
        edited = ws[i : i + 1] + 0.5 * direction
        change_tuned = r.render(G, edited, index=i) - r.render(G, ws[i : i + 1], index=i)
        with torch.no_grad():
            change_pivot = G.synthesis(edited) - G.synthesis(ws[i : i + 1])
        assert torch.allclose(r.render(G, ws[i : i + 1], index=i), r.images[i : i + 1], atol=1e-4)
        cos = torch.nn.functional.cosine_similarity(change_tuned.flatten(), change_pivot.flatten(), dim=0)
        assert cos > 0.9 and change_tuned.abs().mean() > 0.5 * change_pivot.abs().mean(), (i, cos)


def test_pti_config_builds_a_tuner_with_a_projector_pivot():
    tuner = build_refiner(compose("invert", ["refine=pti"]).refine)
    assert isinstance(tuner, Tuner) and tuner.num_steps == 350 and tuner.pivot is None
    assert tuner.kwargs["lr"] == 3e-4 and tuner.kwargs["locality"] is None
    cfg = compose("invert", ["refine=pti", "refine@refine.pivot=projector", "refine.pivot.num_steps=2",
                             "refine.num_steps=5", "refine.locality.enabled=true", "refine.locality.lpips_weight=0",
                             "refine.rank=2"]).refine
    with pytest.warns(UserWarning):
        tuner = build_refiner(cfg)
    assert tuner.pivot_steps == 2 and tuner.kwargs["locality"]["alpha"] == 30.0
    G, ws, target = _problem()
    r = tuner(G, target, ws_init=None, snapshot_steps=[0, 1, 2, 3, 5])  # mean seed: projector from w_avg
    assert [s.step for s in r.snapshots] == [0, 1, 2, 3, 5] and r.pivot_steps == 2
    assert r.steps_taken.tolist() == [3, 3] and r.rank == 2
    assert not torch.equal(r.ws[0], G.w_avg.expand_as(r.ws[0]))  # the projector moved the pivot
    assert (r.curves["mse"][-1] < r.curves["mse"][0]).all()
    with pytest.raises(ValueError, match="total budget"):
        build_refiner(compose("invert", ["refine=pti", "refine@refine.pivot=projector", "refine.num_steps=5"]).refine)
    with pytest.raises(ValueError, match="unknown keys"):
        build_refiner(compose("invert", ["refine=pti", "+refine.space=w"]).refine)
    not_a_generator = torch.nn.Linear(2, 2)
    not_a_generator.num_ws, not_a_generator.w_dim, not_a_generator.img_resolution = 16, 8, 16
    with pytest.raises(ValueError, match="needs a StyleGAN2 or StyleGAN3 generator"):
        tune_generator(not_a_generator, torch.zeros(1, 3, 16, 16), torch.zeros(1, 16, 8), num_steps=1, **KW)
    assert math.isfinite(float(r.curves["total"][-1].sum()))
