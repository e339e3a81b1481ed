"""Tests for inversion.losses: per-sample / scalar consistency, frozen networks with gradients reaching only the
inputs, offline weight loading in the official layouts (random weights in tmp files), pSp / e4e formulas, and
real LPIPS figures on the shared CelebA-HQ faces when ../shared is present."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from test_encoders import random_state, treb1en_irse_shapes

from inversion.losses import (
    PSP_FACE_CROP,
    DeltaRegLoss,
    FaceNetIDLoss,
    FeatureSimilarityLoss,
    FrozenLoss,
    IDLoss,
    LatentCodesDiscriminator,
    LatentCodesPool,
    LatentL2Loss,
    LPIPSLoss,
    MSELoss,
    VGGFeatureLoss,
    WNormLoss,
    dims_to_discriminate,
    discriminator_loss,
    discriminator_loss_terms,
    fake_codes_for_discriminator,
    generator_adv_loss,
    r1_penalty,
)

TINY_IRSE = dict(channels=(8, 8, 16, 16), pool_size=32, crop=(8, 56, 4, 60), resize_to=64)
ALEX_FILE = "weights/alexnet_features_imagenet.pth"
VGG_FILE = "weights/vgg16_features_imagenet_fp16.pth"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test in this file runs with downloads and sockets disabled."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def images(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=g) * 2 - 1).clamp(-1, 1)


def check_image_loss(loss: torch.nn.Module, size: int = 64, zero_tol: float = 1e-5) -> torch.Tensor:
    """Finite scalar, per-sample [N] with mean = scalar, ~0 for identical inputs, gradients reach the input
    only, and the module stays frozen in eval mode."""
    x, y = images(2, size, 0), images(2, size, 1)
    if isinstance(loss, FrozenLoss):
        loss.train()  # must be a no-op for frozen networks
        assert not any(m.training for m in loss.modules())
    assert not any(p.requires_grad for p in loss.parameters())
    x.requires_grad_(True)
    value = loss(x, y)
    assert value.ndim == 0 and torch.isfinite(value)
    per = loss(x, y, per_sample=True)
    assert per.shape == (2,) and torch.isfinite(per).all()
    torch.testing.assert_close(per.mean(), value, rtol=1e-5, atol=1e-6)
    value.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())
    with torch.no_grad():
        same = loss(y, y.clone(), per_sample=True)
    assert same.abs().max() < zero_tol
    return per.detach()


def face_batch(shared: Path, size: int = 256) -> torch.Tensor:
    from PIL import Image

    files = sorted((shared / "data" / "faces" / "celebahq").glob("*.png"))
    if len(files) < 2:
        pytest.skip("shared CelebA-HQ faces not found")
    arrays = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.LANCZOS)) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


def shared_file(shared: Path, name: str) -> Path:
    path = shared / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


# ----------------------------------------------------------------------------------------------------
# Offline guard and pixel loss


def test_network_is_blocked_in_these_tests():
    with pytest.raises(AssertionError, match="network"):
        urllib.request.urlopen("https://example.com")
    with pytest.raises(AssertionError, match="network"):
        torch.hub.load_state_dict_from_url("https://example.com/x.pth")


def test_mse_loss_matches_f_mse_and_crop():
    check_image_loss(MSELoss())
    x, y = images(2, 256, 0), images(2, 256, 1)
    torch.testing.assert_close(MSELoss()(x, y), F.mse_loss(x, y))
    c = PSP_FACE_CROP
    crop = (slice(None), slice(None), slice(c[0], c[1]), slice(c[2], c[3]))
    torch.testing.assert_close(MSELoss(crop=c)(x, y), F.mse_loss(x[crop], y[crop]))


# ----------------------------------------------------------------------------------------------------
# LPIPS and VGG feature loss


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_random_trunk_with_wheel_linear_layers(net):
    torch.manual_seed(0)
    loss = LPIPSLoss(net=net)
    loss.load_lin_weights()  # ships inside the lpips wheel
    assert all((lin.model[-1].weight >= 0).all() for lin in loss.lpips.lins)  # LPIPS v0.1 lin weights are >= 0
    per = check_image_loss(loss, size=64 if net == "alex" else 32)
    assert (per > 0).all()


def test_lpips_size_and_crop_options():
    torch.manual_seed(0)
    loss = LPIPSLoss(net="alex", size=56, crop=(4, 52, 4, 52))
    loss.load_lin_weights()
    plain = LPIPSLoss(net="alex")
    plain.load_state_dict(loss.state_dict())
    x, y = images(2, 64, 0), images(2, 64, 1)
    xs, ys = (F.adaptive_avg_pool2d(t, 56)[:, :, 4:52, 4:52] for t in (x, y))
    with torch.no_grad():
        torch.testing.assert_close(loss(x, y, per_sample=True), plain(xs, ys, per_sample=True))


def test_lpips_backbone_loading_errors(tmp_path):
    loss = LPIPSLoss(net="alex")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        loss.load_backbone_weights(tmp_path / "nowhere.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, bad)
    with pytest.raises(RuntimeError, match="features.0.bias"):
        loss.load_backbone_weights(bad)


@pytest.mark.parametrize("net, file", [("alex", ALEX_FILE), ("vgg", VGG_FILE)])
def test_lpips_from_pretrained_loads_shared_trunk(shared_dir, net, file):
    path = shared_file(shared_dir, file)
    loss = LPIPSLoss.from_pretrained(path, net=net)
    state = torch.load(path, map_location="cpu", weights_only=True)
    trunk = loss.lpips.net.state_dict()
    assert len(trunk) == len(state)
    for key, value in trunk.items():
        src = state["features." + key.split(".", 1)[1]]
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, src.float(), rtol=0, atol=0)


def test_lpips_ranks_real_faces(shared_dir):
    """../shared/README.md: AlexNet LPIPS(face, face blurred with sigma 2) = 0.337 and LPIPS(face, another
    face) = 0.484 at 256 px (VGG: 0.293 / 0.570, not run here to keep the file fast)."""
    loss = LPIPSLoss.from_pretrained(shared_file(shared_dir, ALEX_FILE), net="alex", size=256)
    faces = face_batch(shared_dir)  # 256 px, [-1, 1]
    blur = torchvision.transforms.functional.gaussian_blur(faces, kernel_size=13, sigma=2.0)
    with torch.no_grad():
        d_blur = loss(faces, blur, per_sample=True)
        d_other = loss(faces, faces.roll(1, 0), per_sample=True)
    assert (d_blur < d_other).all()
    assert abs(d_blur.mean().item() - 0.337) < 0.05
    assert abs(d_other.mean().item() - 0.484) < 0.05


def test_vgg_feature_loss_random_and_layers():
    torch.manual_seed(0)
    loss = VGGFeatureLoss()
    assert len(loss.features) == 21  # up to conv4_2's ReLU (features[20])
    assert loss.taps == (1, 3, 13, 20)
    per = check_image_loss(loss)
    assert (per > 0).all()
    raw = VGGFeatureLoss(layers=("conv1_1",), after_relu=False)
    assert raw.taps == (0,) and len(raw.features) == 1


def test_vgg_feature_loss_loads_shared_fp16_weights(shared_dir):
    path = shared_file(shared_dir, VGG_FILE)
    loss = VGGFeatureLoss.from_pretrained(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    w = loss.features[19].weight
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, state["features.19.weight"].float(), rtol=0, atol=0)
    faces = face_batch(shared_dir, 64)
    blur = torchvision.transforms.functional.gaussian_blur(faces, kernel_size=5, sigma=1.0)
    with torch.no_grad():
        assert (loss(faces, blur, per_sample=True) < loss(faces, faces.roll(1, 0), per_sample=True)).all()


# ----------------------------------------------------------------------------------------------------
# Identity losses


def test_id_loss_defaults_are_psp():
    loss = IDLoss()
    assert loss.crop == (35, 223, 32, 220) and loss.pool_size == 112 and loss.resize_to == 256
    assert loss.facenet.input_size == 112 and len(loss.facenet.body) == 24
    assert loss.facenet.output_layer[1].p == 0.6
    for size in (256, 512):
        assert loss.preprocess(images(1, size)).shape == (1, 3, 112, 112)
    x = images(2, 256)
    expected = F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], (112, 112))
    torch.testing.assert_close(loss.preprocess(x), expected, rtol=0, atol=0)
    big = images(2, 512)  # not 256: pooled to 256 first (StyleCLIP's rule)
    torch.testing.assert_close(loss.preprocess(big), loss.preprocess(F.adaptive_avg_pool2d(big, 256)))


def test_id_loss_crop_and_pool_arguments():
    loss = IDLoss(channels=(8, 8, 16, 16), crop=(0, 40, 4, 44), pool_size=16, resize_to=None)
    x = images(2, 64)
    out = loss.preprocess(x)
    assert out.shape == (2, 3, 16, 16) and loss.facenet.input_size == 16
    torch.testing.assert_close(out, F.adaptive_avg_pool2d(x[:, :, 0:40, 4:44], 16))
    assert IDLoss(channels=(8, 8, 16, 16), crop=None, pool_size=48, resize_to=64).preprocess(x).shape == (2, 3, 48, 48)
    with pytest.raises(ValueError, match="crop"):
        IDLoss(channels=(8, 8, 16, 16), crop=(0, 100, 0, 100), pool_size=16, resize_to=None).preprocess(x)


def test_id_loss_tiny_gradients_and_similarity():
    torch.manual_seed(0)
    loss = IDLoss(**TINY_IRSE)
    check_image_loss(loss)
    x, y = images(2, 64, 0), images(2, 64, 1).requires_grad_(True)
    loss(x.requires_grad_(True), y).backward()
    assert y.grad is None  # the target embedding is detached, as in pSp
    sim = loss.similarity(x.detach(), x.detach())
    assert sim.shape == (2,)
    torch.testing.assert_close(sim, torch.ones(2), rtol=0, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(loss(x, y, per_sample=True), 1 - loss.similarity(x, y))


def test_id_loss_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        IDLoss.from_pretrained(tmp_path / "model_ir_se50.pth", **TINY_IRSE)
    message = str(err.value)
    assert "model_ir_se50.pth" in message and "TreB1eN" in message and "pixel2style2pixel" in message


def test_id_loss_loads_treb1en_layout_strictly(tmp_path):
    path = tmp_path / "model_ir_se50.pth"
    state = random_state(treb1en_irse_shapes())  # official model_ir_se50.pth layout, random values
    torch.save(state, path)
    loss = IDLoss.from_pretrained(path)
    own = loss.facenet.state_dict()
    assert own.keys() == state.keys()
    torch.testing.assert_close(own["body.23.res_layer.5.fc2.weight"], state["body.23.res_layer.5.fc2.weight"])
    with torch.no_grad():
        value = loss(images(2, 256, 0), images(2, 256, 1))
    assert torch.isfinite(value) and -1e-5 <= value <= 2 + 1e-5
    del state["output_layer.3.bias"]
    torch.save(state, path)
    with pytest.raises(RuntimeError, match="output_layer.3.bias"):
        IDLoss.from_pretrained(path)


def test_facenet_id_loss_random_weights(tmp_path):
    torch.manual_seed(0)
    loss = FaceNetIDLoss()
    x = torch.ones(1, 3, 64, 64)
    torch.testing.assert_close(loss.preprocess(x), torch.full((1, 3, 160, 160), 127.5 / 128))  # (255 - 127.5) / 128
    check_image_loss(loss)
    # A VGGFace2-layout state dict (with its 8631-class head) loads strictly; the head is ignored.
    from facenet_pytorch import InceptionResnetV1

    src = InceptionResnetV1(pretrained=None, classify=True, num_classes=8631)
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(src.state_dict(), path)
    loaded = FaceNetIDLoss.from_pretrained(path, crop=(8, 56, 8, 56))
    torch.testing.assert_close(loaded.facenet.last_linear.weight, src.last_linear.weight)
    assert loaded.preprocess(images(2, 64)).shape == (2, 3, 160, 160)
    with pytest.raises(FileNotFoundError, match="vggface2"):
        FaceNetIDLoss.from_pretrained(tmp_path / "missing.pt")


def test_feature_similarity_loss_psp_preprocessing():
    torch.manual_seed(0)
    loss = FeatureSimilarityLoss(arch="resnet18")
    x = images(2, 64)
    torch.testing.assert_close(loss.preprocess(x), F.interpolate(x, size=224), rtol=0, atol=0)  # pSp: nearest, as is
    assert loss.embed(x).shape == (2, 512)
    check_image_loss(loss)
    cropped = FeatureSimilarityLoss(arch="resnet18", crop=(0, 32, 0, 32), size=64, imagenet_normalize=True)
    assert cropped.preprocess(x).shape == (2, 3, 64, 64)


def test_moco_checkpoint_remapping(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None)
    state = {f"module.encoder_q.{k}": v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    state.update({  # MoCo-v2 projection head, key encoder and queue: all dropped
        "module.encoder_q.fc.0.weight": torch.randn(2048, 2048), "module.encoder_q.fc.0.bias": torch.randn(2048),
        "module.encoder_q.fc.2.weight": torch.randn(128, 2048), "module.encoder_q.fc.2.bias": torch.randn(128),
        "module.encoder_k.conv1.weight": torch.randn(64, 3, 7, 7),
        "module.queue": torch.randn(128, 16), "module.queue_ptr": torch.zeros(1, dtype=torch.long),
    })  # fmt: skip
    path = tmp_path / "moco_v2_800ep_pretrain.pt"
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state}, path)
    loss = FeatureSimilarityLoss.from_pretrained(path)
    torch.testing.assert_close(loss.model.layer4[2].conv3.weight, resnet.layer4[2].conv3.weight)
    with torch.no_grad():
        feats = loss.embed(images(2, 64))
    assert feats.shape == (2, 2048)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2))
    with pytest.raises(FileNotFoundError, match="MoCo"):
        FeatureSimilarityLoss.from_pretrained(tmp_path / "missing.pt", arch="resnet18")


# ----------------------------------------------------------------------------------------------------
# Latent losses


def latents(n: int = 3, num_ws: int = 6, w_dim: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, num_ws, w_dim, generator=torch.Generator().manual_seed(seed))


def test_w_norm_matches_psp():
    ws, w_avg = latents(), torch.randn(8)
    loss = WNormLoss()
    torch.testing.assert_close(loss(ws, w_avg), torch.sum((ws - w_avg).norm(2, dim=(1, 2))) / ws.shape[0])
    per = loss(ws, w_avg, per_sample=True)
    assert per.shape == (3,)
    torch.testing.assert_close(per.mean(), loss(ws, w_avg))
    assert loss(w_avg.expand(3, 6, 8), w_avg) == 0
    assert loss(w_avg.repeat(6, 1).expand(3, 6, 8), w_avg.repeat(6, 1)) == 0  # pSp's latent_avg [num_ws, w_dim]
    torch.testing.assert_close(WNormLoss(start_from_latent_avg=False)(ws), ws.flatten(1).norm(dim=1).mean())
    with pytest.raises(ValueError, match="w_avg"):
        loss(ws)
    ws.requires_grad_(True)
    loss(ws, w_avg).backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0


def test_delta_reg_matches_e4e():
    ws = latents(num_ws=6)
    loss = DeltaRegLoss()

    def e4e(latent, stage):  # training/coach.py calc_loss: range(1, progressive_stage.value + 1), dims = range(num_ws)
        total = 0
        for i in range(1, stage + 1):
            total += torch.norm(latent[:, i, :] - latent[:, 0, :], 2, dim=1).mean()
        return total

    for stage in (1, 2, 3, 5):  # stage 1 regularises delta 1, the delta it trains (the old 1..stage-1 gave 0)
        torch.testing.assert_close(loss(ws, stage), e4e(ws, stage))
    assert loss(ws, 1) > 0
    torch.testing.assert_close(loss(ws), e4e(ws, 5))  # None: every delta
    assert loss(ws, 0) == 0 and loss(ws, 6) == 0  # 6 = num_ws = Inference: e4e skips it
    assert loss.layers(6, 4) == [1, 2, 3, 4]
    per = loss(ws, 4, per_sample=True)
    assert per.shape == (3,)
    torch.testing.assert_close(per.mean(), loss(ws, 4))
    per_delta = loss.per_delta(ws, 3)  # e4e's delta{i}_loss logs
    assert list(per_delta) == [1, 2, 3]
    torch.testing.assert_close(sum(per_delta.values()), loss(ws, 3))
    same = ws[:, :1].expand(3, 6, 8)
    assert loss(same) == 0
    l1 = sum((ws[:, i] - ws[:, 0]).abs().sum(1).mean() for i in (1, 2))
    torch.testing.assert_close(DeltaRegLoss(p=1)(ws, 2), l1)
    ws.requires_grad_(True)
    loss(ws, 0).backward()  # zero but connected
    loss(ws).backward()
    assert ws.grad.abs().sum() > 0


def test_latent_l2_loss():
    a, b = latents(seed=0), latents(seed=1)
    loss = LatentL2Loss()
    torch.testing.assert_close(loss(a, b), F.mse_loss(a, b))
    torch.testing.assert_close(loss(a, b, per_sample=True).mean(), loss(a, b))
    assert loss(a, a.clone()) == 0


# ----------------------------------------------------------------------------------------------------
# e4e latent discriminator


def test_latent_discriminator_official_layout():
    D = LatentCodesDiscriminator(512, 4)
    shapes = {k: tuple(v.shape) for k, v in D.state_dict().items()}
    assert shapes == {
        "mlp.0.weight": (512, 512), "mlp.0.bias": (512,),
        "mlp.2.weight": (512, 512), "mlp.2.bias": (512,),
        "mlp.4.weight": (512, 512), "mlp.4.bias": (512,),
        "mlp.6.weight": (1, 512), "mlp.6.bias": (1,),
    }  # fmt: skip
    assert D(torch.randn(3, 512)).shape == (3, 1)
    assert D.mlp[1].negative_slope == 0.2


def test_discriminator_losses_and_r1():
    torch.manual_seed(0)
    D = LatentCodesDiscriminator(w_dim=16, num_layers=3)
    real_w = torch.randn(4, 16)
    fake_ws = torch.randn(4, 5, 16, requires_grad=True)
    fake_w = fake_codes_for_discriminator(fake_ws, dims=[0, 1, 2])
    assert fake_w.shape == (4, 16)
    torch.testing.assert_close(fake_w, fake_ws[:, 0])

    d_loss = discriminator_loss(D, real_w, fake_w)
    real_term, fake_term = discriminator_loss_terms(D, real_w, fake_w)
    torch.testing.assert_close(d_loss, F.softplus(-D(real_w)).mean() + F.softplus(D(fake_w)).mean())
    torch.testing.assert_close(d_loss, real_term + fake_term)
    assert torch.isfinite(d_loss)
    d_loss.backward()
    assert all(p.grad is not None for p in D.parameters())
    assert fake_ws.grad is None  # the D loss does not reach the encoder

    D.zero_grad()
    D.requires_grad_(False)  # encoder step: D frozen
    g_loss = generator_adv_loss(D, fake_ws, dims=[0, 1, 2])
    expected = sum(F.softplus(-D(fake_ws[:, i])).mean() for i in range(3)) / 3
    torch.testing.assert_close(g_loss, expected)
    per = generator_adv_loss(D, fake_ws, dims=[0, 1, 2], per_sample=True)
    assert per.shape == (4,)
    torch.testing.assert_close(per.mean(), g_loss)
    g_loss.backward()
    assert fake_ws.grad is not None and fake_ws.grad[:, 3:].abs().sum() == 0 and fake_ws.grad[:, :3].abs().sum() > 0
    assert all(p.grad is None for p in D.parameters())
    torch.testing.assert_close(generator_adv_loss(D, fake_ws[:, 0]), F.softplus(-D(fake_ws[:, 0])).mean())

    D.requires_grad_(True)
    r1 = r1_penalty(D, real_w, gamma=10.0, reg_every=16)
    w = real_w.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(w).sum(), w)
    torch.testing.assert_close(r1, 10.0 / 2 * grad.pow(2).sum(1).mean() * 16)
    assert r1 > 0
    torch.testing.assert_close(r1_penalty(D, real_w, gamma=1.0, reg_every=1), r1 / 160)
    params = list(D.parameters())
    grads = torch.autograd.grad(r1, params, allow_unused=True)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_dims_to_discriminate():
    assert dims_to_discriminate(18) == list(range(18))
    assert dims_to_discriminate(18, 0) == [0]
    assert dims_to_discriminate(18, 3) == [0, 1, 2, 3]
    assert dims_to_discriminate(14, 14) == list(range(14))


def test_latent_codes_pool():
    pool = LatentCodesPool(pool_size=4, seed=0)
    first = torch.randn(3, 8)
    torch.testing.assert_close(pool.query(first), first)  # filling: codes pass through
    assert len(pool) == 3
    out = pool.query(torch.randn(5, 8))
    assert out.shape == (5, 8) and len(pool) == 4 == pool.num_ws
    stored = torch.stack(pool.ws)
    for _ in range(5):
        new = torch.randn(6, 8)
        out = pool.query(new)
        for row in out:  # every code returned is either new or was stored in the pool
            assert any(torch.equal(row, r) for r in new) or any(torch.equal(row, r) for r in stored)
        stored = torch.cat([stored, torch.stack(pool.ws)])
    ws = torch.randn(4, 5, 8)  # [N, L, w_dim]: one random layer per sample
    fresh = LatentCodesPool(pool_size=50, seed=1)
    picked = fresh.query(ws)
    assert picked.shape == (4, 8)
    assert all(any(torch.equal(picked[n], ws[n, i]) for i in range(5)) for n in range(4))
    assert fake_codes_for_discriminator(ws, dims=[0, 1], pool=LatentCodesPool(0)).shape == (4, 8)
    same = torch.randn(2, 8)
    assert LatentCodesPool(0).query(same) is same
