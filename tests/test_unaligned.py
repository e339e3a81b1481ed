"""StyleGAN3 renders in the unaligned framing (inversion.unaligned, invert --sg3-unaligned): the geometry against
stylegan3-editing's recipe, the input-transform convention on seeded StyleGAN3s, the CLI flag end to end."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import scipy.ndimage
import torch

from inversion.align import AlignResult, aligned_to_image, ffhq_quad, image_to_aligned
from inversion.imageio import from_pil, to_pil
from inversion.models import demo_stylegan3
from inversion.unaligned import (
    has_input_transform,
    make_transform,
    render_unaligned,
    unaligned_transform,
)

SQUARE = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [1.0, -1.0]])  # TL, BL, BR, TR


def _rot(deg: float) -> np.ndarray:
    """Rotation by ``deg`` in image coordinates (y down): clockwise on screen for deg > 0."""
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def _square_quad(centre, side: float, deg: float) -> np.ndarray:
    return np.asarray(centre, dtype=np.float64) + side / 2 * SQUARE @ _rot(deg).T


def _corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def sg3_t():
    return demo_stylegan3(img_resolution=32, channel_max=16)


@pytest.fixture(scope="module")
def sg3_r():
    return demo_stylegan3(img_resolution=32, channel_max=16, use_radial_filters=True)


def _ws(G, n: int = 4) -> torch.Tensor:
    with torch.no_grad():
        return G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(1)))


# ----------------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("phi, theta", [(30.0, 330.0), (-20.0, 20.0), (0.0, 0.0), (135.0, 225.0)])
def test_rotation_and_translation_are_recovered_from_the_quad(phi, theta):
    # The quad: a square of side 400 centred at (620, 410), its top edge at phi degrees (clockwise on screen).
    # stylegan3-editing's theta is the counter-clockwise PIL angle from the aligned crop to the unaligned one:
    # theta = -phi mod 360.
    c, side = np.array([620.0, 410.0]), 400.0
    quad = _square_quad(c, side, phi)
    result = AlignResult(PIL.Image.new("RGB", (256, 256)), quad, np.zeros((5, 2)), np.zeros(4), 1.0, 1)

    # Default: the square is centred on the quad (crop_face without random shift); same sizes -> t = 0.
    tf = unaligned_transform(result)
    assert tf.align_size == tf.output_size == 256
    np.testing.assert_allclose(tf.box, [420.0, 210.0, 820.0, 610.0], atol=1e-9)
    np.testing.assert_allclose(tf.quad, c + side / 2 * SQUARE, atol=1e-9)
    assert (tf.theta - theta + 180) % 360 - 180 == pytest.approx(0.0, abs=1e-9) and 0 <= tf.theta < 360
    np.testing.assert_allclose(tf.translation, [0.0, 0.0], atol=1e-12)

    # A shifted square and a 32 px unaligned crop: t = (c - c_box) / side + the warp's half-pixel offsets
    # 0.5 * (f_align - f_out) / side per axis, with FFHQ's shrink factors f = floor(side / size / 2) (1 if < 2):
    # f_align = floor(400 / 256 / 2) -> 1, f_out = floor(400 / 32 / 2) = 6.
    tf = unaligned_transform(result, 32, center=c + [40.0, -20.0])
    t = np.array([-40.0, 20.0]) / side + 0.5 * (1 - 6) / side
    np.testing.assert_allclose(tf.translation, t, atol=1e-12)
    np.testing.assert_allclose(tf.box, [460.0, 190.0, 860.0, 590.0], atol=1e-9)
    s, k = np.sin(np.deg2rad(theta)), np.cos(np.deg2rad(theta))
    np.testing.assert_allclose(tf.matrix, [[k, s, t[0]], [-s, k, t[1]], [0, 0, 1]], atol=1e-12)  # their formula
    np.testing.assert_allclose(tf.matrix, make_transform(t, theta), atol=1e-15)
    np.testing.assert_allclose(tf.inverse @ tf.matrix, np.eye(3), atol=1e-12)

    # M maps aligned coordinates (image widths, centred) to unaligned ones, point by point through the photo.
    a = np.array([[-0.3, 0.1], [0.25, 0.4], [0.0, -0.45]])
    photo = aligned_to_image((a + 0.5) * 256, quad, 256)
    u = image_to_aligned(photo, tf.quad, 32) / 32 - 0.5
    np.testing.assert_allclose(np.c_[a, np.ones(3)] @ tf.matrix[:2].T, u, atol=1e-12)


@pytest.mark.parametrize("deg", [12.0, -35.0, 170.0])
def test_theta_and_t_equal_stylegan3_editings_eye_based_recipe(deg):
    """Their get_stylegan_transform on exact landmarks (no re-detection): theta from the eye lines of the two
    images, t from the left eye of the aligned image rotated by theta about its centre."""
    face = np.array([[-30.0, 2.0], [31.0, -4.0], [3.0, 35.0], [-22.0, 71.0], [27.0, 68.0]])  # not symmetric
    lm = 2.3 * face @ _rot(deg).T + [400.0, 300.0]
    quad = ffhq_quad(lm)
    size = 256
    result = AlignResult(PIL.Image.new("RGB", (size, size)), quad, lm, np.zeros(4), 1.0, 1)
    tf = unaligned_transform(result, center=quad.mean(axis=0) + [17.0, -9.0])

    eyes_a = image_to_aligned(lm[:2], quad, size)  # (left, right) in the aligned crop
    eyes_u = image_to_aligned(lm[:2], tf.quad, size)  # ... and in the unaligned crop
    e_a, e_u = (e[1] - e[0] for e in (eyes_a, eyes_u))
    assert abs(np.degrees(np.arctan2(e_a[1], e_a[0]))) > 1.0  # the aligned eye line is not horizontal here
    theta = np.degrees(np.arccos(np.dot(e_u / np.linalg.norm(e_u), e_a / np.linalg.norm(e_a))))
    if eyes_u[1, 1] > eyes_u[0, 1]:
        theta = 360 - theta
    # PIL's rotate(theta) (counter-clockwise on screen, about the centre) in y-down pixel coordinates.
    ccw = np.array([[np.cos(np.deg2rad(theta)), np.sin(np.deg2rad(theta))],
                    [-np.sin(np.deg2rad(theta)), np.cos(np.deg2rad(theta))]])
    left_r = (eyes_a[0] - size / 2) @ ccw.T + size / 2
    t = (eyes_u[0] - left_r) / size
    assert tf.theta == pytest.approx(theta, abs=1e-6)
    np.testing.assert_allclose(tf.translation, t, atol=1e-9)
    assert np.linalg.norm(t) > 0.02  # the shifted square gives a real translation (0.033)


def test_bad_quads_and_generators_are_refused(sg3_t):
    with pytest.raises(ValueError, match="not a square"):
        unaligned_transform(np.array([[0.0, 0.0], [0.0, 100.0], [150.0, 100.0], [150.0, 0.0]]), align_size=64)
    with pytest.raises(ValueError, match="align_size is needed"):
        unaligned_transform(_square_quad((0, 0), 10, 0))

    from inversion.models import Generator

    G2 = Generator(z_dim=8, w_dim=8, img_resolution=8, n_mlp=1, channel_max=8)
    assert not has_input_transform(G2) and has_input_transform(sg3_t)
    with pytest.raises(ValueError, match="needs a StyleGAN3 generator.*Generator"):
        render_unaligned(G2, torch.zeros(1, G2.num_ws, 8), np.eye(3))
    with pytest.raises(ValueError, match=r"\[3, 3\] or \[N, 3, 3\]"):
        render_unaligned(sg3_t, _ws(sg3_t, 2), np.stack([np.eye(3)] * 3))
    # The buffer is restored when rendering fails (here: ws of the wrong width, refused inside synthesis).
    buf = sg3_t.synthesis.input.transform
    before = buf.clone()
    with pytest.raises(AssertionError, match="ws must be"):
        render_unaligned(sg3_t, torch.zeros(2, sg3_t.num_ws, 3), np.stack([make_transform((0.1, 0), 10)] * 2))
    assert torch.equal(buf, before)


# ----------------------------------------------------------------------------------------------- convention


def _shift_error(out: torch.Tensor, base: torch.Tensor, dx: int, dy: int, margin: int = 4) -> float:
    """Max |out(y, x) - base(y - dy, x - dx)| over pixels at least ``margin`` from the border in both."""
    n = base.shape[-1]
    ys = np.arange(margin + max(dy, 0), n - margin + min(dy, 0))
    xs = np.arange(margin + max(dx, 0), n - margin + min(dx, 0))
    return float((out[..., ys[:, None], xs[None]] - base[..., (ys - dy)[:, None], (xs - dx)[None]]).abs().max())


@pytest.mark.parametrize("dx, dy", [(1, 0), (0, 3), (-2, 0), (3, -3)])
def test_translation_by_whole_pixels_on_config_t(sg3_t, dx, dy):
    """M translating by (dx, dy) output pixels (t = d / 32 image widths): the buffer M^-1 moves the content by
    +d, the buffer M by -d. Tolerance: worst measured 0.0157 (images in [-1, 1], std 0.26) 4 px inside the
    border (where the margin's content does not reach), the wrong direction >= 0.28 off, no shift >= 0.14."""
    G, ws = sg3_t, _ws(sg3_t)
    M = make_transform((dx / 32, dy / 32), 0.0)
    before = G.synthesis.input.transform.clone()
    with torch.no_grad():
        base = G.synthesis(ws)
        forward, backward = render_unaligned(G, ws, np.linalg.inv(M)), render_unaligned(G, ws, M)
    assert torch.equal(G.synthesis.input.transform, before)  # restored
    assert _shift_error(forward, base, dx, dy) < 0.03
    assert _shift_error(backward, base, -dx, -dy) < 0.03
    assert _shift_error(forward, base, -dx, -dy) > 0.1 and _shift_error(forward, base, 0, 0) > 0.1


def test_rotation_on_config_r_and_per_image_matrices(sg3_r):
    """theta = 90 (stylegan3-editing's angle, counter-clockwise like PIL's rotate): config R's render is the
    aligned render turned by np.rot90 (measured: max difference 1e-6, correlation 1.000000 on every image; the
    other direction 0.12-0.83). At 30 degrees against a bicubic rotation inside the central disc: measured
    correlation >= 0.99999 (config T: 0.83-0.99)."""
    G, ws = sg3_r, _ws(sg3_r)
    with torch.no_grad():
        base = G.synthesis(ws)
        turned = render_unaligned(G, ws, np.linalg.inv(make_transform((0, 0), 90.0)))
    expected = torch.rot90(base, 1, dims=(2, 3))
    for i in range(len(ws)):
        assert _corr(turned[i], expected[i]) > 0.999
    assert (turned - expected).abs().max() < 1e-3
    assert min(_corr(turned[i], torch.rot90(base[i], -1, dims=(1, 2))) for i in range(len(ws))) < 0.9

    # 30 degrees, and a different matrix per image: [identity, M30^-1, identity, M30^-1].
    M30inv = np.linalg.inv(make_transform((0, 0), 30.0))
    per_image = np.stack([np.eye(3), M30inv, np.eye(3), M30inv])
    with torch.no_grad():
        mixed = render_unaligned(G, ws, per_image)
    torch.testing.assert_close(mixed[[0, 2]], base[[0, 2]], atol=1e-5, rtol=0)
    yy, xx = np.mgrid[0:32, 0:32] + 0.5 - 16  # output pixel centres, centred
    src = np.einsum("ij,jhw->ihw", M30inv[:2, :2], np.stack([xx, yy]))  # aligned point shown at each pixel
    disc = xx**2 + yy**2 < 12**2
    for i in (1, 3):
        ref = np.stack([scipy.ndimage.map_coordinates(base[i, ch].numpy(), [src[1] + 15.5, src[0] + 15.5], order=3)
                        for ch in range(3)])
        assert _corr(mixed[i].numpy()[:, disc], ref[:, disc]) > 0.999
        assert _corr(base[i].numpy()[:, disc], ref[:, disc]) < 0.95  # the rotation is visible (0.80, 0.88)


def test_render_matches_the_unaligned_crop_of_a_synthetic_photo(sg3_r):
    """A photo made from the aligned render through a known quad (rotated 25 or -40 degrees, the unaligned square
    shifted or not): the render with M^-1 equals tf.crop(photo) inside the central disc. Measured: mean |diff|
    0.0029-0.0034 (uint8 rounding + resampling), correlation >= 0.9991; rendering with M instead, or the plain
    aligned render, is >= 4.3x further off (0.0135-0.074)."""
    G, ws = sg3_r, _ws(sg3_r, 3)
    with torch.no_grad():
        base = G.synthesis(ws).clamp(-1, 1)
    size, side = 32, 48.0
    yy, xx = np.mgrid[0:96, 0:96]
    pixels = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)
    uy, ux = np.mgrid[0:size, 0:size] + 0.5 - size / 2
    disc = ux**2 + uy**2 < 12**2
    for deg, centre, shift in ((25.0, (50.0, 45.0), None), (-40.0, (47.0, 52.0), (4.0, -3.0))):
        quad = _square_quad(centre, side, deg)
        tf = unaligned_transform(quad, size, align_size=size,
                                 center=None if shift is None else np.add(centre, shift))
        with torch.no_grad():
            good, bad = (render_unaligned(G, ws, m).clamp(-1, 1).numpy() for m in (tf.inverse, tf.matrix))
        src = image_to_aligned(pixels, quad, size) - 0.5  # aligned pixel index sampled by each photo pixel
        for i in range(len(ws)):
            photo = np.stack([scipy.ndimage.map_coordinates(base[i, ch].numpy(), [src[:, 1], src[:, 0]], order=3,
                                                            mode="nearest").reshape(96, 96) for ch in range(3)])
            crop = from_pil(tf.crop(to_pil(torch.from_numpy(photo).clamp(-1, 1)))).numpy()[:, disc]
            err = float(np.abs(good[i][:, disc] - crop).mean())
            assert err < 0.006 and _corr(good[i][:, disc], crop) > 0.998
            for other in (bad[i], base[i].numpy()):
                assert float(np.abs(other[:, disc] - crop).mean()) > 3 * err


# ----------------------------------------------------------------------------------------------- CLI


def _export(tmp_path, name: str, gen_cfg: dict, G) -> str:
    from inversion.checkpoints import save_inverter
    from inversion.encoders import BackboneEncoder
    from inversion.inverter import Inverter

    kwargs = dict(num_ws=G.num_ws, w_dim=G.w_dim, input_size=32, channels=[16, 16, 32, 32])
    torch.manual_seed(0)
    inv = Inverter(encoder=BackboneEncoder(**kwargs).eval(), generator=G, num_iters=1, residual=True,
                   encoder_size=32)
    return str(save_inverter(inv, tmp_path / f"{name}.pt", generator_config=gen_cfg,
                             encoder_config={"_target_": "inversion.encoders.BackboneEncoder", **kwargs}))


def test_cli_flag_needs_align_and_a_stylegan3(tmp_path, capsys):
    from inversion import cli
    from inversion.models import demo_generator

    gen_cfg = {"_target_": "inversion.models.demo_generator", "img_resolution": 32, "channel_max": 16}
    ckpt = _export(tmp_path, "sg2", gen_cfg, demo_generator(img_resolution=32, channel_max=16))
    photos = tmp_path / "photos"
    photos.mkdir()
    PIL.Image.new("RGB", (40, 40), (120, 90, 80)).save(photos / "p.png")
    common = ["invert", "--checkpoint", ckpt, "--input", str(photos), "--device", "cpu", "--no-progress"]
    assert cli.main([*common, "--output", str(tmp_path / "a"), "--sg3-unaligned"]) == 2
    assert "--sg3-unaligned needs --align" in capsys.readouterr().err
    assert cli.main([*common, "--output", str(tmp_path / "b"), "--sg3-unaligned", "--align"]) == 2
    assert "--sg3-unaligned needs a StyleGAN3 generator" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_on_a_rotated_real_face(tmp_path, shared_dir):
    """A real FFHQ face turned 20 degrees counter-clockwise, inverted with --align --sg3-unaligned by an untrained
    ReStyle export over a config-R demo StyleGAN3: theta ~ 20 (MTCNN's landmarks: within 5 degrees; measured
    19.1), the files and records are written, unaligned_input/ is the aligned crop turned by theta and unaligned/
    the reconstruction turned by theta (central disc; measured correlations 0.983 and 0.998, unturned 0.47 and
    0.959; on 4 faces at +20 / -15 degrees: theta within 1.7 degrees, 0.975-0.992 and 0.998-0.999)."""
    from inversion import cli

    face = shared_dir / "data" / "faces" / "ffhq" / "69037.png"
    if not face.is_file():
        pytest.skip(f"{face} not found")
    gen_cfg = {"_target_": "inversion.models.demo_stylegan3", "img_resolution": 32, "channel_max": 16,
               "use_radial_filters": True}
    G = demo_stylegan3(img_resolution=32, channel_max=16, use_radial_filters=True)
    ckpt = _export(tmp_path, "sg3", gen_cfg, G)
    photos = tmp_path / "photos"
    photos.mkdir()
    img = PIL.Image.open(face).convert("RGB")
    canvas = PIL.Image.new("RGB", (384, 384), (128, 128, 128))
    canvas.paste(img, (64, 64))
    canvas.rotate(20.0, resample=PIL.Image.Resampling.BICUBIC, center=(200, 180)).save(photos / "tilted.png")
    out = tmp_path / "out"
    assert cli.main(["invert", "--checkpoint", ckpt, "--input", str(photos), "--output", str(out), "--device", "cpu",
                     "--no-progress", "--align", "--sg3-unaligned"]) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["sg3_unaligned"] is True and summary["num_processed"] == 1
    info = summary["processed"][0]["unaligned"]
    theta = info["theta"]
    assert (theta - 20 + 180) % 360 - 180 == pytest.approx(0, abs=5)
    record = torch.load(out / "latents" / "tilted.pt", weights_only=True)
    tf = record["unaligned"]
    assert tf["matrix"].dtype == torch.float64 and tf["theta"] == theta
    torch.testing.assert_close(tf["inverse"] @ tf["matrix"], torch.eye(3, dtype=torch.float64))
    np.testing.assert_allclose(tf["matrix"].numpy(), make_transform(info["translation"], theta), atol=1e-12)
    assert np.allclose(info["inverse"], tf["inverse"].numpy())

    def load(folder: str) -> np.ndarray:
        path = out / folder / "tilted.png"
        assert PIL.Image.open(path).size == (32, 32)
        return np.float32(PIL.Image.open(path).convert("RGB")) / 255

    yy, xx = np.mgrid[0:32, 0:32] + 0.5 - 16
    disc = xx**2 + yy**2 < 12**2

    def turned(arr: np.ndarray) -> np.ndarray:
        pil = PIL.Image.fromarray(np.uint8(np.rint(arr * 255)))
        return np.float32(pil.rotate(theta, resample=PIL.Image.Resampling.BICUBIC)) / 255

    aligned = np.float32(PIL.Image.open(out / "aligned" / "tilted.png").resize((32, 32), PIL.Image.LANCZOS)) / 255
    rec, unaligned, unaligned_input = load("reconstructions"), load("unaligned"), load("unaligned_input")
    assert _corr(unaligned_input[disc], turned(aligned)[disc]) > 0.97
    assert _corr(unaligned[disc], turned(rec)[disc]) > 0.97
    assert _corr(unaligned[disc], turned(rec)[disc]) > _corr(unaligned[disc], rec[disc]) + 0.02
