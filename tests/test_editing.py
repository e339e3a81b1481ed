"""Latent-space edits (inversion.editing): each test checks an edit's defining property."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from inversion.editing import (
    apply_direction,
    crossover,
    expression_difference,
    expression_transfer,
    interpolate,
    layer_indices,
    load_direction,
    save_frames_gif,
    style_mix,
)
from inversion.imageio import image_grid, save_grid
from inversion.models import mix_styles

from helpers import tiny_generator

N, NUM_WS, W_DIM = 3, 8, 16


def _ws(seed: int, n: int = N) -> torch.Tensor:
    return torch.randn(n, NUM_WS, W_DIM, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- interpolate


def test_interpolate_endpoints_midpoint_and_count():
    a, b = _ws(0), _ws(1)
    frames = interpolate(a, b, 5)
    assert frames.shape == (5, N, NUM_WS, W_DIM)
    assert torch.equal(frames[0], a) and torch.equal(frames[-1], b)
    assert torch.allclose(frames[2], (a + b) / 2, atol=1e-6)
    steps = frames.diff(dim=0)  # linear: equal steps
    assert torch.allclose(steps, steps[:1].expand_as(steps), atol=1e-5)


def test_interpolate_explicit_ts_and_broadcast():
    a, b = _ws(0), _ws(1, n=1)
    frames = interpolate(a, b, ts=[0.0, 0.25, 1.0, 1.5])
    assert frames.shape == (4, N, NUM_WS, W_DIM)
    assert torch.equal(frames[0], a) and torch.equal(frames[2], b.expand_as(a))
    assert torch.allclose(frames[1], 0.75 * a + 0.25 * b, atol=1e-6)
    assert torch.allclose(frames[3], b + 0.5 * (b - a), atol=1e-5)  # extrapolation
    w_frames = interpolate(a[:, 0], b[:, 0], 3)  # [N, w_dim] works too
    assert w_frames.shape == (3, N, W_DIM)


@pytest.mark.parametrize("kw", [dict(), dict(num_frames=1), dict(num_frames=3, ts=[0, 1]), dict(ts=[])])
def test_interpolate_rejects_bad_frames(kw):
    with pytest.raises(ValueError):
        interpolate(_ws(0), _ws(1), **kw)


def test_interpolate_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shapes do not match"):
        interpolate(_ws(0), _ws(1)[:, :4], 3)


# ------------------------------------------------------------------------------------- crossover / style_mix


@pytest.mark.parametrize("k", [0, 1, 4, NUM_WS])
def test_crossover_takes_coarse_layers_from_a(k):
    a, b = _ws(0), _ws(1)
    out = crossover(a, b, k)
    assert torch.equal(out[:, :k], a[:, :k]) and torch.equal(out[:, k:], b[:, k:])
    assert torch.equal(out, mix_styles(a, b, k))
    if k == 0:
        assert torch.equal(out, b)
    if k == NUM_WS:
        assert torch.equal(out, a)


@pytest.mark.parametrize("k", [-1, NUM_WS + 1])
def test_crossover_rejects_out_of_range_layer(k):
    with pytest.raises(ValueError, match="crossover layer"):
        crossover(_ws(0), _ws(1), k)
    with pytest.raises(TypeError):
        crossover(_ws(0), _ws(1), 2.0)


def test_crossover_broadcasts_single_style():
    a, b = _ws(0), _ws(1, n=1)
    out = crossover(a, b, 3)
    assert out.shape == a.shape and torch.equal(out[:, 3:], b[:, 3:].expand(N, -1, -1))


@pytest.mark.parametrize("layers", [[1, 5, 6], range(2, 4), slice(5, None), 0, [], None])
def test_style_mix_takes_exactly_the_listed_layers_from_b(layers):
    a, b = _ws(0), _ws(1)
    out = style_mix(a, b, layers)
    chosen = set(layer_indices(layers, NUM_WS))
    for i in range(NUM_WS):
        assert torch.equal(out[:, i], (b if i in chosen else a)[:, i]), i
    assert torch.equal(style_mix(a, b, range(3, NUM_WS)), crossover(a, b, 3))


def test_layer_indices_validation():
    assert layer_indices(slice(-2, None), NUM_WS) == [NUM_WS - 2, NUM_WS - 1]
    assert layer_indices([3, 1, 3], NUM_WS) == [1, 3]
    with pytest.raises(ValueError, match="out of range"):
        layer_indices([0, NUM_WS], NUM_WS)
    with pytest.raises(ValueError, match="out of range"):
        layer_indices([-1], NUM_WS)
    with pytest.raises(TypeError):
        layer_indices([1.5], NUM_WS)


# ------------------------------------------------------------------------------------ expression transfer


def _expression_pair():
    """w2, w3 whose difference has, on every layer, big channels (+-1 / 2) on 0..3 and tiny ones elsewhere."""
    w2 = _ws(2, n=1)
    delta = torch.full((1, NUM_WS, W_DIM), 1e-3)
    delta[..., 1::2] *= -1
    delta[..., :4] = torch.tensor([1.0, -1.0, 2.0, -2.0])
    return w2, w2 + delta, delta


def test_expression_transfer_zero_strength_and_equal_pair_return_w1():
    w1 = _ws(0)
    w2, w3, _ = _expression_pair()
    assert torch.equal(expression_transfer(w1, w2, w3, strength=0.0), w1)
    assert torch.equal(expression_transfer(w1, w2, w2.clone(), strength=1.7), w1)
    assert torch.equal(expression_transfer(w1, w2, w2.clone(), strength=1.0, normalize=False), w1)


def test_expression_transfer_thresholding_keeps_only_big_channels():
    w1 = _ws(0)
    w2, w3, delta = _expression_pair()
    # RMS per layer is sqrt((1 + 1 + 4 + 4 + 12e-6) / 16) ~ 0.79: threshold 0.5 keeps exactly channels 0..3.
    change = expression_transfer(w1, w2, w3, strength=1.0, threshold=0.5, normalize=False) - w1
    assert torch.all(change[..., 4:] == 0)
    assert torch.allclose(change[..., :4], delta[..., :4].expand(N, -1, -1), atol=1e-5)
    # threshold 2 (x RMS ~ 1.58) keeps only the +-2 channels; threshold 0 keeps everything.
    change = expression_transfer(w1, w2, w3, threshold=2.0, normalize=False) - w1
    assert (change.abs() > 0).sum(-1).eq(2).all() and (change[..., 2:4].abs() > 1.9).all()
    change = expression_transfer(w1, w2, w3, threshold=0.0, normalize=False) - w1
    assert torch.allclose(change, delta.expand(N, -1, -1), atol=1e-5)


def test_expression_transfer_normalize_keeps_layer_norm():
    w2, w3, delta = _expression_pair()
    d = expression_difference(w2, w3, threshold=0.5, normalize=True)
    assert torch.all(d[..., 4:] == 0)
    assert torch.allclose(d.norm(dim=-1), delta.norm(dim=-1), rtol=1e-5)
    assert torch.allclose(d[..., :4] / delta[..., :4], d[..., :1] / delta[..., :1])  # same direction, rescaled


def test_expression_transfer_layer_threshold_zeros_small_layers():
    w2 = _ws(2, n=1)
    delta = 0.01 * torch.randn(1, NUM_WS, W_DIM, generator=torch.Generator().manual_seed(3))
    delta[:, [1, 4]] *= 1000  # two layers change a lot, the others are noise
    d = expression_difference(w2, w2 + delta, threshold=0.0, layer_threshold=1.0)
    changed = d.abs().sum(-1)[0] > 0
    assert changed.tolist() == [i in (1, 4) for i in range(NUM_WS)]
    assert torch.allclose(d[:, [1, 4]], delta[:, [1, 4]])


def test_expression_transfer_is_linear_with_sign_in_strength():
    w1 = _ws(0)
    w2, w3, delta = _expression_pair()
    c1 = expression_transfer(w1, w2, w3, strength=1.0) - w1
    c2 = expression_transfer(w1, w2, w3, strength=2.5) - w1
    cn = expression_transfer(w1, w2, w3, strength=-1.0) - w1
    assert torch.allclose(c2, 2.5 * c1, atol=1e-5) and torch.allclose(cn, -c1, atol=1e-6)
    survivors = c1[..., :4]
    assert torch.equal(torch.sign(survivors), torch.sign(delta[..., :4]).expand_as(survivors))
    assert torch.equal(torch.sign(cn[..., :4]), -torch.sign(survivors))


def test_expression_transfer_validates():
    w2, w3, _ = _expression_pair()
    with pytest.raises(ValueError, match="threshold"):
        expression_transfer(_ws(0), w2, w3, threshold=-1)
    with pytest.raises(ValueError, match="shapes do not match"):
        expression_transfer(_ws(0), w2[:, :2], w3[:, :2])


# ------------------------------------------------------------------------------------------- directions


@pytest.mark.parametrize("shape", [(W_DIM,), (1, W_DIM), (NUM_WS, W_DIM)])
def test_apply_direction_changes_only_selected_layers(shape):
    ws = _ws(0)
    d = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    assert torch.equal(apply_direction(ws, d, 0.0), ws)
    assert torch.equal(apply_direction(ws, d, 0.0, [1, 2]), ws)
    layers = [1, 2, 6]
    out = apply_direction(ws, d, 3.0, layers)
    full = d.reshape(-1, W_DIM).expand(NUM_WS, W_DIM)
    for i in range(NUM_WS):
        if i in layers:
            assert torch.allclose(out[:, i] - ws[:, i], 3.0 * full[i].expand(N, -1), atol=1e-5)
        else:
            assert torch.equal(out[:, i], ws[:, i])
    unit = apply_direction(ws, d, 2.0, normalize=True) - ws
    assert torch.allclose(unit.norm(dim=-1), torch.full((N, NUM_WS), 2.0), atol=1e-5)


def test_apply_direction_per_sample_strength_and_bad_shape():
    ws, d = _ws(0), torch.ones(W_DIM)
    out = apply_direction(ws, d, torch.tensor([0.0, 1.0, -2.0]), slice(0, 2))
    assert torch.equal(out[0], ws[0])
    assert torch.allclose(out[2, :2] - ws[2, :2], torch.full((2, W_DIM), -2.0))
    assert torch.equal(out[:, 2:], ws[:, 2:])
    with pytest.raises(ValueError, match="direction must be"):
        apply_direction(ws, torch.ones(W_DIM + 1), 1.0)
    with pytest.raises(ValueError, match="direction must be"):
        apply_direction(ws, torch.ones(NUM_WS - 1, W_DIM), 1.0)


def test_load_direction_round_trips(tmp_path):
    d = torch.randn(1, W_DIM)  # InterFaceGAN stores boundaries as [1, w_dim]
    np.save(tmp_path / "b.npy", d.numpy().astype(np.float64))
    torch.save(d[0], tmp_path / "t.pt")
    torch.save({"direction": d.expand(NUM_WS, -1).clone(), "step": 3}, tmp_path / "dict.pth")
    assert torch.allclose(load_direction(tmp_path / "b.npy", NUM_WS, W_DIM), d[0])
    loaded = load_direction(str(tmp_path / "t.pt"), w_dim=W_DIM)
    assert loaded.dtype == torch.float32 and torch.equal(loaded, d[0])
    assert torch.equal(load_direction(tmp_path / "dict.pth", NUM_WS, W_DIM), d.expand(NUM_WS, -1))


def test_load_direction_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.npy"
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_direction(missing)
    np.save(tmp_path / "wide.npy", np.zeros((1, W_DIM + 1), np.float32))
    with pytest.raises(ValueError, match="wide.npy.*shape"):
        load_direction(tmp_path / "wide.npy", w_dim=W_DIM)
    torch.save(torch.zeros(NUM_WS + 1, W_DIM), tmp_path / "rows.pt")
    with pytest.raises(ValueError, match="rows.pt.*shape"):
        load_direction(tmp_path / "rows.pt", NUM_WS, W_DIM)
    torch.save({"a": torch.zeros(W_DIM), "b": torch.zeros(W_DIM)}, tmp_path / "two.pt")
    with pytest.raises(ValueError, match="two.pt.*exactly one tensor"):
        load_direction(tmp_path / "two.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt.*could not read"):
        load_direction(tmp_path / "junk.pt")
    (tmp_path / "d.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="d.txt.*unsupported"):
        load_direction(tmp_path / "d.txt")


# ---------------------------------------------------------------------------------------------- outputs


def test_gif_has_one_frame_per_image(tmp_path):
    t = torch.linspace(-1, 1, 6).view(6, 1, 1, 1)
    frames = t.expand(6, 3, 8, 10).clone()
    path = save_frames_gif(frames, tmp_path / "out" / "morph.gif", duration_ms=50)
    with Image.open(path) as im:
        assert im.size == (10, 8) and im.info["loop"] == 0
        assert sum(1 for _ in ImageSequence.Iterator(im)) == 6


def test_grid_size_and_placement(tmp_path):
    images = torch.linspace(-1, 1, 5).view(5, 1, 1, 1).expand(5, 3, 4, 6).clone()
    grid = image_grid(images, nrow=2, padding=1)
    assert grid.dtype == np.uint8 and grid.shape == (3 * (4 + 1) + 1, 2 * (6 + 1) + 1, 3)
    assert (grid[1:5, 1:7] == 0).all() and (grid[11:15, 1:7] == 255).all()  # first (-1) and last (+1) tiles
    assert (grid[11:15, 8:14] == 255).all()  # unused cell stays padding
    path = save_grid(images, tmp_path / "grid.png", nrow=5, padding=0)
    with Image.open(path) as im:
        assert im.size == (5 * 6, 4)


# ------------------------------------------------------------------------------------------- end to end


def test_edits_render_with_tiny_generator(tmp_path):
    G = tiny_generator()
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = G.mapping(z)
    a, b = ws[:2], ws[2:]
    direction = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(1))
    edits = {
        "interpolate": interpolate(a, b, 3).flatten(0, 1),
        "crossover": crossover(a, b, G.num_ws // 2),
        "style_mix": style_mix(a, b, [0, G.num_ws - 1]),
        "expression": expression_transfer(a, b[:1], b[1:], strength=0.8),
        "direction": apply_direction(a, direction, 1.5, range(0, 4), normalize=True),
    }
    res = G.img_resolution
    with torch.no_grad():
        images = {k: G.synthesis(v, noise_mode="const") for k, v in edits.items()}
        reference = G.synthesis(a, noise_mode="const")
    for name, img in images.items():
        assert img.shape == (edits[name].shape[0], 3, res, res) and torch.isfinite(img).all(), name
    assert torch.allclose(images["interpolate"][:2], reference, atol=1e-5)  # t = 0 frame renders A
    assert not torch.allclose(images["direction"], reference)
    gif = save_frames_gif(images["interpolate"].view(3, 2, 3, res, res)[:, 0], tmp_path / "morph.gif")
    assert gif.is_file()
