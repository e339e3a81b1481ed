"""Tests for inversion.encoders: shapes on tiny CPU models, official architecture sizes and key layouts,
weight loading from the official IR-SE50 / torchvision ResNet-34 layouts, and e4e progressive stages."""

from __future__ import annotations

import pytest
import torch
import torchvision

from inversion.encoders import (
    Backbone,
    BackboneEncoder,
    Encoder4Editing,
    GradualStyleEncoder,
    ProgressiveBackboneEncoder,
    ResNetBackboneEncoder,
    ResNetProgressiveBackboneEncoder,
    WEncoder,
    load_backbone_weights,
    load_resnet34_weights,
)

TINY = dict(num_ws=8, w_dim=32, channels=(16, 16, 32, 32))  # 3 coarse, 4 middle, 1 fine style
ALL_ENCODERS = [
    GradualStyleEncoder,
    WEncoder,
    Encoder4Editing,
    BackboneEncoder,
    ProgressiveBackboneEncoder,
    ResNetBackboneEncoder,
    ResNetProgressiveBackboneEncoder,
]
PROGRESSIVE = [Encoder4Editing, ProgressiveBackboneEncoder, ResNetProgressiveBackboneEncoder]


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def bn_state(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.{k}": (n,) for k in ("weight", "bias", "running_mean", "running_var")}
    shapes[f"{prefix}.num_batches_tracked"] = ()
    return shapes


def treb1en_irse_shapes(
    channels=(64, 128, 256, 512), units=(3, 4, 14, 3), input_size=112, embedding_dim=512
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of TreB1eN's Backbone(50, mode='ir_se') state dict (model_ir_se50.pth), written from
    the official layer list: input_layer = [conv3x3, BN, PReLU]; unit = shortcut_layer ([conv1x1, BN] when
    the width changes, else MaxPool) + res_layer = [BN, conv3x3, PReLU, conv3x3(stride), BN,
    SE(fc1, fc2; reduction 16)]; output_layer = [BN2d, Dropout, Flatten, Linear(512*7*7, 512), BN1d]."""
    shapes = {"input_layer.0.weight": (channels[0], 3, 3, 3)}
    shapes.update(bn_state("input_layer.1", channels[0]))
    shapes["input_layer.2.weight"] = (channels[0],)
    i, in_ch = 0, channels[0]
    for depth, count in zip(channels, units):
        for _ in range(count):
            p = f"body.{i}"
            if in_ch != depth:
                shapes[f"{p}.shortcut_layer.0.weight"] = (depth, in_ch, 1, 1)
                shapes.update(bn_state(f"{p}.shortcut_layer.1", depth))
            shapes.update(bn_state(f"{p}.res_layer.0", in_ch))
            shapes[f"{p}.res_layer.1.weight"] = (depth, in_ch, 3, 3)
            shapes[f"{p}.res_layer.2.weight"] = (depth,)
            shapes[f"{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
            shapes.update(bn_state(f"{p}.res_layer.4", depth))
            shapes[f"{p}.res_layer.5.fc1.weight"] = (max(1, depth // 16), depth, 1, 1)
            shapes[f"{p}.res_layer.5.fc2.weight"] = (depth, max(1, depth // 16), 1, 1)
            i, in_ch = i + 1, depth
    shapes.update(bn_state("output_layer.0", channels[3]))
    shapes["output_layer.3.weight"] = (embedding_dim, channels[3] * (input_size // 16) ** 2)
    shapes["output_layer.3.bias"] = (embedding_dim,)
    shapes.update(bn_state("output_layer.4", embedding_dim))
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(100)
        elif k.endswith("running_var"):
            state[k] = torch.rand(s, generator=g) + 0.5
        else:
            state[k] = torch.randn(s, generator=g) * 0.1
    return state


# ----------------------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("cls", ALL_ENCODERS)
def test_tiny_encoder_ws_shape(cls, size):
    torch.manual_seed(0)
    enc = cls(input_size=size, **TINY).eval()
    with torch.no_grad():
        ws = enc(torch.randn(2, enc.in_channels, size, size))
    assert ws.shape == (2, 8, 32)
    assert torch.isfinite(ws).all()
    with pytest.raises(AssertionError):  # wrong resolution is rejected at the boundary
        enc(torch.randn(1, enc.in_channels, size * 2, size * 2))


def test_wencoder_broadcasts_one_w():
    enc = WEncoder(input_size=32, **TINY).eval()
    with torch.no_grad():
        ws = enc(torch.randn(2, 3, 32, 32))
    assert torch.equal(ws, ws[:, :1].expand_as(ws))


@pytest.mark.parametrize("cls", [BackboneEncoder, ResNetBackboneEncoder])
def test_restyle_takes_six_channels(cls):
    enc = cls(input_size=32, **TINY).eval()
    assert enc.in_channels == 6
    with torch.no_grad():
        assert enc(torch.randn(1, 6, 32, 32)).shape == (1, 8, 32)
    with pytest.raises(AssertionError):
        enc(torch.randn(1, 3, 32, 32))


def test_pyramid_head_depths_follow_input_size():
    enc = GradualStyleEncoder(input_size=64, **TINY)
    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in s.convs) for s in enc.styles]
    assert convs == [2, 2, 2, 3, 3, 3, 3, 4]  # log2 of 4, 8, 16 (= 64/16, 64/8, 64/4)


# ----------------------------------------------------------------------------------------------------
# Official architecture sizes (built on the meta device: no memory, no init cost)
#
# Hand derivation from the official layer lists (params only; BN running stats are buffers):
#   IR-SE unit(in, d): [shortcut conv 1x1 in*d + BN 2d, only if in != d] + BN 2*in + conv 9*in*d + PReLU d
#                      + conv 9*d*d + BN 2d + SE 2*d*(d/16)
#     stage1 3 x (64,64)                       = 3 * 74,560                         =    223,680
#     stage2 (64,128) 232,192 + 3 x 297,600    =                                       1,124,992
#     stage3 (128,256) 927,232 + 13 x 1,189,120 =                                     16,385,792
#     stage4 (256,512) 3,705,856 + 2 x 4,753,920 =                                    13,213,696
#     body                                                                          = 30,948,160
#   input_layer(C) = 64*C*9 + 128 + 64: 1,920 (C=3), 3,648 (C=6)
#   GradualStyleBlock(512, 512, s) = n * (9*512*512 + 512) + (512*512 + 512), n = log2(s) convs:
#     s=16: 9,701,888   s=32: 12,061,696   s=64: 14,421,504
#   pSp GradualStyleEncoder (3 ch, 18 styles) = 1,920 + 30,948,160 + 3*9,701,888 + 4*12,061,696
#     + 11*14,421,504 + latlayer1 (256*512 + 512) 131,584 + latlayer2 (128*512 + 512) 66,048 = 267,136,704
#   e4e Encoder4Editing: identical layers                                              = 267,136,704
#   ReStyle BackboneEncoder (6 ch) = 3,648 + 30,948,160 + 18 * 9,701,888                = 205,585,792
#   ReStyle ResNetBackboneEncoder (6 ch) = conv1 64*6*49 18,816 + bn1 128 + PReLU 64
#     + ResNet-34 layer1..4 21,275,136 (= 21,797,672 total - conv1 9,408 - bn1 128 - fc 513,000)
#     + 18 * 9,701,888                                                                 = 195,928,128
#   ArcFace Backbone IR-SE50 (112 px) = 1,920 + 30,948,160 + BN 1,024 + Linear 512*7*7*512 + 512
#     + BN1d 1,024                                                                     =  43,797,696
#   pSp W encoder = 1,920 + 30,948,160 + EqualLinear 512*512 + 512                     =  31,212,736


@pytest.mark.parametrize(
    "cls, kwargs, expected",
    [
        (GradualStyleEncoder, {}, 267_136_704),
        (Encoder4Editing, {}, 267_136_704),
        (BackboneEncoder, {"in_channels": 6}, 205_585_792),
        (ResNetBackboneEncoder, {"in_channels": 6}, 195_928_128),
        (ProgressiveBackboneEncoder, {"in_channels": 6}, 205_585_792),
        (ResNetProgressiveBackboneEncoder, {"in_channels": 6}, 195_928_128),
        (WEncoder, {}, 31_212_736),
        (Backbone, {}, 43_797_696),
    ],
)
def test_full_size_parameter_counts(cls, kwargs, expected):
    with torch.device("meta"):
        model = cls(**kwargs)
    assert num_params(model) == expected


def test_resnet34_body_matches_torchvision():
    with torch.device("meta"):
        tv = torchvision.models.resnet34()
        enc = ResNetBackboneEncoder(num_ws=1, w_dim=8)
    tv_body = {k: v.shape for k, v in tv.state_dict().items() if k.startswith("layer")}
    ours = {k: v.shape for k, v in enc.state_dict().items() if k.startswith("body.")}
    assert len(tv_body) == len(ours)
    assert sorted(map(tuple, tv_body.values())) == sorted(map(tuple, ours.values()))
    assert num_params(tv) == 21_797_672


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_official_key_names_and_shapes():
    with torch.device("meta"):
        psp = _shapes(GradualStyleEncoder())
        e4e = _shapes(Encoder4Editing())
        restyle = _shapes(BackboneEncoder())
        resnet = _shapes(ResNetBackboneEncoder())
        w_enc = _shapes(WEncoder())
    assert psp == e4e
    # pSp / e4e FPN encoder (psp_ffhq_encode.pt / e4e_ffhq_encode.pt keys after 'encoder.')
    assert psp["input_layer.0.weight"] == (64, 3, 3, 3)
    assert psp["input_layer.2.weight"] == (64,)
    assert "body.0.shortcut_layer.0.weight" not in psp  # MaxPool shortcut when the width is unchanged
    assert psp["body.3.shortcut_layer.0.weight"] == (128, 64, 1, 1)
    assert psp["body.0.res_layer.5.fc1.weight"] == (4, 64, 1, 1)
    assert psp["body.23.res_layer.5.fc2.weight"] == (512, 32, 1, 1)
    assert psp["body.23.res_layer.3.weight"] == (512, 512, 3, 3)
    assert "body.24.res_layer.0.weight" not in psp
    assert psp["styles.0.convs.6.weight"] == (512, 512, 3, 3) and "styles.0.convs.8.weight" not in psp
    assert psp["styles.3.convs.8.bias"] == (512,) and "styles.6.convs.10.weight" not in psp
    assert psp["styles.17.convs.10.weight"] == (512, 512, 3, 3) and "styles.18.linear.weight" not in psp
    assert psp["styles.0.linear.weight"] == (512, 512) and psp["styles.0.linear.bias"] == (512,)
    assert psp["latlayer1.weight"] == (512, 256, 1, 1) and psp["latlayer2.weight"] == (512, 128, 1, 1)
    # ReStyle IR-SE BackboneEncoder: 6-channel stem, 18 heads on the 16x16 map
    assert restyle["input_layer.0.weight"] == (64, 6, 3, 3)
    assert restyle["styles.17.convs.6.weight"] == (512, 512, 3, 3)
    assert "styles.17.convs.8.weight" not in restyle
    assert not any(k.startswith("latlayer") for k in restyle)
    # ReStyle ResNet-34 encoder
    assert resnet["conv1.weight"] == (64, 6, 7, 7) and resnet["relu.weight"] == (64,)
    assert resnet["bn1.running_var"] == (64,)
    assert resnet["body.0.conv1.weight"] == (64, 64, 3, 3) and "body.0.downsample.0.weight" not in resnet
    assert resnet["body.3.downsample.0.weight"] == (128, 64, 1, 1)
    assert resnet["body.7.downsample.1.weight"] == (256,)
    assert resnet["body.15.conv2.weight"] == (512, 512, 3, 3) and "body.16.conv1.weight" not in resnet
    # pSp BackboneEncoderUsingLastLayerIntoW
    assert w_enc["linear.weight"] == (512, 512) and not any(k.startswith("styles") for k in w_enc)


# ----------------------------------------------------------------------------------------------------
# IR-SE50 (model_ir_se50.pth) layout and loading


def test_backbone_loads_treb1en_layout_strictly():
    shapes = treb1en_irse_shapes()
    assert shapes["body.0.res_layer.5.fc1.weight"] == (4, 64, 1, 1)
    assert shapes["output_layer.3.weight"] == (512, 25088)
    model = Backbone()  # one full-size model (44M parameters)
    assert _shapes(model) == shapes
    state = random_state(shapes)
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.output_layer[3].weight, state["output_layer.3.weight"])


def test_tiny_backbone_from_file_gives_unit_embeddings(tmp_path):
    channels = (16, 16, 32, 32)
    path = tmp_path / "model_ir_se50.pth"
    torch.save(random_state(treb1en_irse_shapes(channels, input_size=32, embedding_dim=16)), path)
    model = Backbone(input_size=32, channels=channels, embedding_dim=16)
    load_backbone_weights(model, path)
    with torch.no_grad():
        emb = model.eval()(torch.randn(2, 3, 32, 32))
    assert emb.shape == (2, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))


def test_load_backbone_weights_into_encoders(tmp_path):
    channels = (16, 16, 32, 32)
    state = random_state(treb1en_irse_shapes(channels, input_size=32, embedding_dim=16))
    path = tmp_path / "model_ir_se50.pth"
    torch.save(state, path)

    psp = GradualStyleEncoder(input_size=32, **TINY)
    loaded = load_backbone_weights(psp, path)
    assert not any(k.startswith("output_layer") for k in loaded)
    ours = psp.state_dict()
    for k, v in state.items():
        if not k.startswith("output_layer"):
            assert torch.equal(ours[k], v), k

    restyle = BackboneEncoder(input_size=32, **TINY)  # 6 channels: RGB kernels first, the rest initialised
    load_backbone_weights(restyle, path, extra_channel_init="zeros")
    w = restyle.input_layer[0].weight
    assert w.shape == (16, 6, 3, 3)
    assert torch.equal(w[:, :3], state["input_layer.0.weight"])
    assert torch.equal(w[:, 3:], torch.zeros(16, 3, 3, 3))
    assert torch.equal(restyle.body[23].res_layer[5].fc1.weight, state["body.23.res_layer.5.fc1.weight"])
    load_backbone_weights(restyle, path)  # default: torch.randn like ReStyle
    assert restyle.input_layer[0].weight[:, 3:].std() > 0.5

    gray = Encoder4Editing(in_channels=1, input_size=32, **TINY)  # non-RGB input: stem keeps its init (pSp)
    stem = gray.input_layer[0].weight.clone()
    load_backbone_weights(gray, path)
    assert torch.equal(gray.input_layer[0].weight, stem)
    assert torch.equal(gray.body[0].res_layer[1].weight, state["body.0.res_layer.1.weight"])

    wide = random_state(treb1en_irse_shapes((32, 32, 64, 64), input_size=32))
    torch.save(wide, tmp_path / "wide.pth")
    with pytest.raises(RuntimeError):  # shape mismatch (wider file vs tiny model) is not silently ignored
        load_backbone_weights(GradualStyleEncoder(input_size=32, **TINY), tmp_path / "wide.pth")


def test_missing_weights_raise_clear_errors(tmp_path):
    missing = tmp_path / "nowhere" / "model_ir_se50.pth"
    with pytest.raises(FileNotFoundError, match=r"model_ir_se50\.pth") as info:
        load_backbone_weights(BackboneEncoder(input_size=32, **TINY), missing)
    assert "IR-SE50" in str(info.value) and "pSp" in str(info.value) and "TreB1eN" in str(info.value)
    with pytest.raises(FileNotFoundError, match="ResNet-34"):
        load_resnet34_weights(ResNetBackboneEncoder(input_size=32, **TINY), tmp_path / "resnet34.pth")


def test_load_resnet34_weights_from_torchvision_layout(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet34()  # random init, official key layout
    path = tmp_path / "resnet34-b627a593.pth"
    torch.save(tv.state_dict(), path)
    enc = ResNetBackboneEncoder(num_ws=2, w_dim=8, input_size=32)  # full-width body, tiny heads
    load_resnet34_weights(enc, path, extra_channel_init="zeros")
    assert torch.equal(enc.conv1.weight[:, :3], tv.conv1.weight) and not enc.conv1.weight[:, 3:].any()
    assert torch.equal(enc.bn1.running_var, tv.bn1.running_var)
    assert torch.equal(enc.body[0].conv1.weight, tv.layer1[0].conv1.weight)
    assert torch.equal(enc.body[4].conv2.weight, tv.layer2[1].conv2.weight)
    assert torch.equal(enc.body[7].downsample[0].weight, tv.layer3[0].downsample[0].weight)
    assert torch.equal(enc.body[15].bn2.bias, tv.layer4[2].bn2.bias)
    with torch.no_grad():
        assert enc.eval()(torch.randn(1, 6, 32, 32)).shape == (1, 2, 8)


# ----------------------------------------------------------------------------------------------------
# e4e progressive stages


@pytest.mark.parametrize("cls", PROGRESSIVE)
def test_progressive_stage_limits_deltas(cls):
    torch.manual_seed(0)
    enc = cls(input_size=32, **TINY).eval()
    assert enc.progressive_stage == 8  # official default: Inference (= num_ws)
    x = torch.randn(2, enc.in_channels, 32, 32)
    with torch.no_grad():
        full = enc(x)
        for k in [0, 1, 2, 3, 6, 7, 8]:
            enc.progressive_stage = k
            ws = enc(x)
            assert ws.shape == (2, 8, 32)
            torch.testing.assert_close(ws[:, 0], full[:, 0], rtol=0, atol=0)
            for j in range(1, 8):
                if j > k:
                    assert torch.equal(ws[:, j], ws[:, 0]), (k, j)
                else:
                    assert not torch.equal(ws[:, j], ws[:, 0]), (k, j)
                    torch.testing.assert_close(ws[:, j], full[:, j])
    for bad in (-1, 9, 2.0):
        with pytest.raises(ValueError):
            enc.progressive_stage = bad
    enc.set_progressive_stage(type("Stage", (), {"value": 4})())  # enum-like (e4e's ProgressiveStage)
    assert enc.progressive_stage == 4 and enc.num_active_deltas == 4
    assert cls(input_size=32, progressive_stage=0, **TINY).progressive_stage == 0


def test_e4e_equals_psp_heads_plus_base():
    """Same weights: e4e's ws[:, i] = styles[0](c3) + styles[i](f_i); pSp's ws[:, i] = styles[i](f_i)."""
    torch.manual_seed(0)
    psp = GradualStyleEncoder(input_size=32, **TINY).eval()
    e4e = Encoder4Editing(input_size=32, **TINY).eval()
    e4e.load_state_dict(psp.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = psp(x), e4e(x)
    torch.testing.assert_close(b[:, 0], a[:, 0])
    torch.testing.assert_close(b[:, 1:], a[:, 1:] + a[:, :1])


@pytest.mark.parametrize("stride", [1, 2])
def test_subsample_shortcut_is_the_official_maxpool(stride):
    """The identity-width shortcut is ``x[:, :, ::s, ::s]``, what the official ``MaxPool2d(1, s)`` computes, for odd
    and even sizes, forward and backward."""
    from inversion.encoders.irse import Subsample

    for size in (7, 8):
        x = torch.randn(2, 4, size, size, requires_grad=True)
        ref = torch.nn.MaxPool2d(1, stride)(x)
        out = Subsample(stride)(x)
        assert torch.equal(out, ref)
        g = torch.randn(ref.shape)
        (g_ref,) = torch.autograd.grad(ref, x, g)
        (g_out,) = torch.autograd.grad(out, x, g)
        assert torch.equal(g_out, g_ref)
