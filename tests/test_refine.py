"""Per-image optimization refinement (inversion.refine): batched, independent, thresholded."""

from __future__ import annotations

import copy

import pytest
import torch

from inversion.losses import MSELoss
from inversion.refine import build_refiner, karras_lr, noise_regularization, refine

STEPS = 12
KW = dict(lr=0.05, loss_size=32, lr_rampup=0.0, lr_rampdown=0.0)


def _targets(G, seeds, noise=None):
    with torch.no_grad():
        z = torch.stack([torch.randn(G.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
        ws = G.mapping(z)
        return ws, G.synthesis(ws, noise=noise)


def _final(r):
    return r.curves["recon"][-1]


def test_refine_lowers_loss_on_every_image(demo_G):
    ws, target = _targets(demo_G, [1, 2, 3])
    r = refine(demo_G, target, space="w+", num_steps=STEPS, **KW)
    start, end = r.curves["recon"][0], _final(r)
    assert r.curves["recon"].shape == (STEPS + 1, 3)
    assert (end < 0.7 * start).all(), (start, end)
    assert r.ws.shape == ws.shape and r.images.shape == target.shape and r.noise is None
    pool = torch.nn.functional.adaptive_avg_pool2d
    mean_images = demo_G.synthesis(demo_G.w_avg.expand_as(ws))
    assert torch.allclose(start, (pool(mean_images, 32) - pool(target, 32)).square().flatten(1).mean(1), atol=1e-6)
    assert not any(p.requires_grad for p in demo_G.parameters())


def test_w_plus_beats_w(demo_G):
    _, target = _targets(demo_G, [4, 5])
    rw = refine(demo_G, target, space="w", num_steps=STEPS, **KW)
    rwp = refine(demo_G, target, space="w+", num_steps=STEPS, **KW)
    assert (rw.ws == rw.ws[:, :1]).all()  # one w broadcast to every layer
    assert (_final(rwp) < _final(rw)).all(), (_final(rwp), _final(rw))


def test_noise_optimization_beats_w_plus(demo_G):
    G = copy.deepcopy(demo_G)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.3)
    gen = torch.Generator().manual_seed(7)
    noise = [torch.randn(2, 1, s[2], s[3], generator=gen) for s in G.noise_shapes()]
    _, target = _targets(G, [6, 7], noise=noise)  # target noise differs from the const buffers
    kw = dict(KW, loss_size=None, noise_regularize=10.0)
    rwp = refine(G, target, space="w+", num_steps=STEPS, **kw)
    rn = refine(G, target, space="w+noise", num_steps=STEPS, **kw)
    assert rn.noise is not None and len(rn.noise) == G.num_layers and rn.noise[-1].shape[0] == 2
    assert (_final(rn) < _final(rwp)).all(), (_final(rn), _final(rwp))
    for b in rn.noise:  # renormalised per image
        assert torch.allclose(b.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4)
        assert torch.allclose(b.square().mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-3)


@pytest.mark.parametrize("space", ["w", "w+noise"])
def test_batched_equals_single(demo_G, space):
    ws_true, target = _targets(demo_G, [8, 9, 10])
    kw = dict(KW, space=space, num_steps=6, lr_rampup=0.05, lr_rampdown=0.25)
    batched = refine(demo_G, target, **kw)
    for i in range(3):
        single = refine(demo_G, target[i : i + 1], **kw)
        assert torch.allclose(batched.ws[i], single.ws[0], atol=1e-4), (batched.ws[i] - single.ws[0]).abs().max()
        assert torch.allclose(batched.curves["total"][:, i], single.curves["total"][:, 0], rtol=1e-3, atol=1e-6)


def test_better_seed_reaches_threshold_sooner(demo_G):
    ws_true, target = _targets(demo_G, [11, 12])
    # ws_true + noise stands in for an encoder's output: closer than w_avg, but not yet below the threshold.
    seeded = ws_true + 0.3 * torch.randn(ws_true.shape, generator=torch.Generator().manual_seed(0))
    kw = dict(KW, space="w+", num_steps=25, threshold=0.01)
    r_mean = refine(demo_G, target, **kw)
    r_seed = refine(demo_G, target, ws_init=seeded, **kw)
    assert (r_seed.curves["recon"][0] < r_mean.curves["recon"][0]).all()
    assert (r_seed.curves["recon"][0] > 0.01).all()
    assert (r_mean.steps_taken < 25).all()  # both reach the threshold, the seeded run sooner
    assert (r_seed.steps_taken < r_mean.steps_taken).all(), (r_seed.steps_taken, r_mean.steps_taken)


def test_threshold_freezes_finished_images(demo_G):
    ws_true, target = _targets(demo_G, [13, 14])
    init = ws_true.clone()
    init[1] = demo_G.w_avg  # image 0 starts at its solution, image 1 at the mean
    losses = {"mse": (1.0, MSELoss())}
    r = refine(demo_G, target, ws_init=init, space="w+", num_steps=8, losses=losses, threshold=1e-3,
               threshold_loss="mse", **KW)
    assert r.steps_taken.tolist() == [0, 8]
    assert torch.equal(r.ws[0], init[0])  # never updated
    assert torch.allclose(r.curves["mse"][:, 0], r.curves["mse"][0, 0])
    assert (r.ws[1] != init[1]).any() and r.curves["mse"][-1, 1] < r.curves["mse"][0, 1]


def test_all_done_stops_early(demo_G):
    ws_true, target = _targets(demo_G, [15])
    r = refine(demo_G, target, ws_init=ws_true, num_steps=50, threshold=1e-6, **KW)
    assert r.steps_taken.tolist() == [0] and r.logged_steps == [0]


def test_helpers():
    assert karras_lr(0, 100, 0.1) == 0.0 and karras_lr(50, 100, 0.1) == pytest.approx(0.1)
    assert karras_lr(0, 100, 0.01, 0.0, 0.0) == 0.01
    flat = [torch.ones(2, 1, 16, 16)]
    assert noise_regularization(flat).tolist() == [4.0, 4.0]  # 16 px and 8 px levels, x and y shifts: 1 each


def test_build_refiner_configs(demo_G):
    from inversion.config import compose

    assert build_refiner(compose("invert", ["refine=none"]).refine) is None
    _, target = _targets(demo_G, [16])
    for name in ("image2stylegan", "projector", "noise"):
        cfg = compose("invert", [f"refine={name}"]).refine
        with pytest.warns(UserWarning, match="paths.vgg16"):  # no VGG16 file: skipped or MSE, with the key named
            fn = build_refiner(cfg)
        r = fn(demo_G, target, num_steps=2, loss_size=16)
        assert r.ws.shape == (1, demo_G.num_ws, demo_G.w_dim)


def test_generator_left_untouched_and_log_every(demo_G):
    G = copy.deepcopy(demo_G).requires_grad_(True)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    _, target = _targets(G, [17, 18])
    r = refine(G, target, space="w", num_steps=5, log_every=2, progress=False, **KW)
    assert r.logged_steps == [0, 2, 4, 5] and r.curves["total"].shape == (4, 2)
    assert all(p.requires_grad and p.grad is None for p in G.parameters())
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())


def test_refine_benchmark_runs_on_cpu_at_small_size():

    from benchmarks import refine as bench

    rows = bench.main(["--device", "cpu", "--resolution", "32", "--batch-sizes", "1", "2", "--steps", "2",
                       "--repeats", "1"])
    assert len(rows) == 2


def test_real_vgg16_perceptual_term_falls_on_every_image(demo_G, shared_dir):
    """Image2StyleGAN's loss with the real ImageNet VGG16 from ../shared: both terms are minimised together."""
    from inversion.config import compose

    vgg = shared_dir / "weights" / "vgg16_features_imagenet_fp16.pth"
    if not vgg.is_file():
        pytest.skip(f"{vgg} not found")
    cfg = compose("invert", ["refine=image2stylegan", f"paths.vgg16={vgg}", "refine.num_steps=10", "refine.lr=0.05"])
    refiner = build_refiner(cfg.refine)
    assert set(refiner.loss_weights) == {"perceptual", "mse"}  # the id term has weight 0: not built
    _, target = _targets(demo_G, [19, 20])
    r = refiner(demo_G, target, snapshot_steps=[0, 5, 10])
    for name in ("perceptual", "mse"):
        assert (r.curves[name][-1] < 0.8 * r.curves[name][0]).all(), (name, r.curves[name][[0, -1]])
    assert [s.step for s in r.snapshots] == [0, 5, 10]
    torch.testing.assert_close(r.snapshots[-1].render(demo_G), r.images)  # the last snapshot is the result
    assert torch.equal(r.snapshots[0].ws, demo_G.w_avg.expand_as(r.ws))  # step 0: the start (w_avg)


def test_identity_term_loads_local_weights(demo_G, tmp_path):
    """An ``id`` term builds a face-ID network from its ``path`` (a tiny IR-SE50 in the official layout here)."""
    from inversion.encoders.irse import Backbone

    torch.manual_seed(0)
    path = tmp_path / "model_ir_se50_tiny.pth"
    torch.save(Backbone(112, 50, "ir_se", channels=[16, 16, 32, 32]).state_dict(), path)
    id_net = {"_target_": "inversion.losses.IDLoss.from_pretrained", "path": str(path), "channels": [16, 16, 32, 32]}
    cfg = {"space": "w+", "num_steps": 3, "lr": 0.05,
           "losses": {"mse": {"weight": 1.0, "module": {"_target_": "inversion.losses.MSELoss"}},
                      "id": {"weight": 0.5, "module": id_net}}}
    refiner = build_refiner(cfg)
    _, target = _targets(demo_G, [21])
    r = refiner(demo_G, target)
    assert r.curves["id"].shape == (4, 1) and (r.curves["id"] >= 0).all()
    torch.testing.assert_close(r.curves["recon"], r.curves["mse"] + 0.5 * r.curves["id"])
    no_file = {**cfg, "losses": {**cfg["losses"], "id": {"weight": 0.5, "module": {**id_net, "path": None}}}}
    with pytest.warns(UserWarning, match="skipping"):  # no file: the term is skipped, MSE remains
        assert set(build_refiner(no_file).loss_weights) == {"mse"}
    with pytest.raises(ValueError, match="unknown keys"):
        build_refiner({**cfg, "num_stepz": 3})


def test_snapshots_after_an_early_stop_hold_the_final_latents(demo_G):
    ws_true, target = _targets(demo_G, [22])
    r = refine(demo_G, target, ws_init=ws_true, num_steps=20, threshold=1e-6, snapshot_steps=[0, 10, 20], **KW)
    assert r.steps_taken.tolist() == [0] and [s.step for s in r.snapshots] == [0, 10, 20]
    assert all(torch.equal(s.ws, ws_true) for s in r.snapshots)
    with pytest.raises(ValueError, match="snapshot_steps"):
        refine(demo_G, target, num_steps=5, snapshot_steps=[6])
