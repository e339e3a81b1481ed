"""The StyleGAN2 generator: layout, maths, truncation, mixing, noise, gradients, precision."""

from __future__ import annotations

import pytest
import torch

from inversion.models import Generator, demo_generator, mix_styles
from inversion.models.stylegan2 import upfirdn2d

from helpers import tiny_generator

# rosinality/stylegan2-pytorch Generator(16, 8, n_mlp=2) state-dict layout, written out from model.py:
# PixelNorm at style.0 (no params), EqualLinear style.1..n_mlp, ConstantInput, conv1/to_rgb1 at 4 px,
# per resolution an up-sampling StyledConv (with a blur kernel buffer) + a StyledConv + a ToRGB with an
# up-sampling kernel buffer, and one noise buffer per conv layer.
ROSINALITY_16PX_KEYS = {
    "style.1.weight": (8, 8), "style.1.bias": (8,), "style.2.weight": (8, 8), "style.2.bias": (8,),
    "input.input": (1, 8, 4, 4),
    "conv1.conv.weight": (1, 8, 8, 3, 3), "conv1.conv.modulation.weight": (8, 8),
    "conv1.conv.modulation.bias": (8,), "conv1.noise.weight": (1,), "conv1.activate.bias": (8,),
    "to_rgb1.bias": (1, 3, 1, 1), "to_rgb1.conv.weight": (1, 3, 8, 1, 1),
    "to_rgb1.conv.modulation.weight": (8, 8), "to_rgb1.conv.modulation.bias": (8,),
    **{
        k: s
        for i in (0, 2)
        for k, s in {
            f"convs.{i}.conv.weight": (1, 8, 8, 3, 3), f"convs.{i}.conv.blur.kernel": (4, 4),
            f"convs.{i}.conv.modulation.weight": (8, 8), f"convs.{i}.conv.modulation.bias": (8,),
            f"convs.{i}.noise.weight": (1,), f"convs.{i}.activate.bias": (8,),
            f"convs.{i + 1}.conv.weight": (1, 8, 8, 3, 3), f"convs.{i + 1}.conv.modulation.weight": (8, 8),
            f"convs.{i + 1}.conv.modulation.bias": (8,), f"convs.{i + 1}.noise.weight": (1,),
            f"convs.{i + 1}.activate.bias": (8,),
        }.items()
    },
    **{
        k: s
        for j in (0, 1)
        for k, s in {
            f"to_rgbs.{j}.bias": (1, 3, 1, 1), f"to_rgbs.{j}.upsample.kernel": (4, 4),
            f"to_rgbs.{j}.conv.weight": (1, 3, 8, 1, 1), f"to_rgbs.{j}.conv.modulation.weight": (8, 8),
            f"to_rgbs.{j}.conv.modulation.bias": (8,),
        }.items()
    },
    "noises.noise_0": (1, 1, 4, 4), "noises.noise_1": (1, 1, 8, 8), "noises.noise_2": (1, 1, 8, 8),
    "noises.noise_3": (1, 1, 16, 16), "noises.noise_4": (1, 1, 16, 16),
}


def test_state_dict_layout_is_rosinalitys():
    G = Generator(z_dim=8, w_dim=8, img_resolution=16, n_mlp=2, channel_max=8)
    got = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    assert got.pop("w_avg") == (8,)
    assert got == ROSINALITY_16PX_KEYS


def _styled_conv_params(cin: int, cout: int, k: int, w_dim: int = 512) -> int:
    # conv weight + affine (weight, bias) + noise strength + bias of the activation
    return cout * cin * k * k + w_dim * cin + cin + 1 + cout


def _to_rgb_params(cin: int, w_dim: int = 512) -> int:
    return 3 * cin + w_dim * cin + cin + 3


def test_config_f_parameter_count():
    # Hand count of StyleGAN2 config-f at 1024 px from its layer shapes (independent of the module).
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
    expected = 8 * (512 * 512 + 512) + 512 * 4 * 4 + _styled_conv_params(512, 512, 3) + _to_rgb_params(512)
    for res in [8, 16, 32, 64, 128, 256, 512, 1024]:
        expected += _styled_conv_params(ch[res // 2], ch[res], 3) + _styled_conv_params(ch[res], ch[res], 3)
        expected += _to_rgb_params(ch[res])
    assert expected == 30_370_060
    G = Generator()
    assert G.num_ws == 18 and G.w_dim == 512 and G.img_resolution == 1024
    assert sum(p.numel() for p in G.parameters()) == expected


@pytest.mark.parametrize("res", [32, 64, 256])
def test_output_shape_for_resolutions(res):
    G = tiny_generator(res, channel_max=8)
    ws = G.mapping(torch.randn(2, G.z_dim))
    assert ws.shape == (2, G.num_ws, G.w_dim) and G.num_ws == 2 * int(torch.log2(torch.tensor(res))) - 2
    img = G.synthesis(ws)
    assert img.shape == (2, 3, res, res) and torch.isfinite(img).all()


def test_demo_generator_is_deterministic_and_in_range(demo_G):
    again = demo_generator()
    for (k, a), (_, b) in zip(demo_G.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    img = demo_G(torch.randn(16, demo_G.z_dim, generator=torch.Generator().manual_seed(3)))
    assert img.shape == (16, 3, 64, 64)
    assert 0.3 < img.std().item() < 0.7
    assert (img.abs() <= 1).float().mean().item() > 0.9  # nominally [-1, 1]


def test_truncation():
    G = tiny_generator()
    z = torch.randn(3, G.z_dim)
    ws0 = G.mapping(z, truncation_psi=0.0)
    assert torch.allclose(ws0, G.w_avg.expand_as(ws0))
    ws1 = G.mapping(z)
    half = G.mapping(z, truncation_psi=0.5)
    assert torch.allclose(half, 0.5 * (ws1 + G.w_avg), atol=1e-6)
    cut = G.mapping(z, truncation_psi=0.0, truncation_cutoff=3)
    assert torch.allclose(cut[:, :3], G.w_avg.expand(3, 3, -1)) and torch.equal(cut[:, 3:], ws1[:, 3:])


def test_style_mixing_switches_at_requested_layer():
    G = tiny_generator(32)
    a, b = G.mapping(torch.randn(2, G.z_dim)), G.mapping(torch.randn(2, G.z_dim))
    for k in range(G.num_ws + 1):
        m = mix_styles(a, b, k)
        assert torch.equal(m[:, :k], a[:, :k]) and torch.equal(m[:, k:], b[:, k:])
    # In the image: mixing at the last layer changes only the final toRGB style, mixing at 0 gives B.
    assert torch.allclose(G.synthesis(mix_styles(a, b, 0)), G.synthesis(b))
    assert not torch.allclose(G.synthesis(mix_styles(a, b, G.num_ws - 1)), G.synthesis(a))
    with pytest.raises(ValueError):
        mix_styles(a, b, G.num_ws + 1)


def test_noise_modes():
    G = tiny_generator()
    ws = G.mapping(torch.randn(2, G.z_dim))
    c1, c2 = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    assert torch.equal(c1, c2)
    r1, r2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
    assert not torch.allclose(r1, r2)
    none = G.synthesis(ws, noise_mode="none")
    zeros = G.synthesis(ws, noise=[torch.zeros(s) for s in G.noise_shapes()])
    assert torch.allclose(none, zeros)
    assert torch.allclose(c1, G.synthesis(ws, noise=G.const_noise()))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="bogus")


def test_frozen_generator_passes_gradients_to_ws_and_noise():
    G = tiny_generator()
    assert not any(p.requires_grad for p in G.parameters())
    ws = G.mapping(torch.randn(2, G.z_dim)).clone().requires_grad_(True)
    noise = [n.clone().requires_grad_(True) for n in G.make_noise(2)]
    G.synthesis(ws, noise=noise).square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    assert all(n.grad is not None and n.grad.abs().sum() > 0 for n in noise)
    assert all(p.grad is None for p in G.parameters())


def test_bf16_autocast_on_cpu_runs_and_is_close():
    G = tiny_generator(32)
    ws = G.mapping(torch.randn(2, G.z_dim))
    ref = G.synthesis(ws)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = G.synthesis(ws)
    assert torch.isfinite(out).all()
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 5e-2, rel


def test_upfirdn2d_matches_definition():
    # 2x up-sampling of an impulse with [1,3,3,1]*4 reproduces the (scaled) kernel.
    k = torch.tensor([1.0, 3, 3, 1])
    k2 = (k[:, None] * k[None]) / 64 * 4
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1
    y = upfirdn2d(x, k2, up=2, pad=(2, 1))
    assert y.shape == (1, 1, 8, 8)
    assert torch.allclose(y.sum(), torch.tensor(4.0))  # gain up**2 preserves DC after zero insertion
    assert torch.allclose(y[0, 0, 1:5, 1:5], torch.flip(k2, [0, 1]))


def test_upfirdn2d_lets_the_convolution_pad_when_padding_is_symmetric():
    """Symmetric non-negative padding is the convolution's own (no padded copy of x); it equals padding first."""
    import torch.nn.functional as F

    x = torch.randn(2, 5, 9, 9, generator=torch.Generator().manual_seed(0))
    k = torch.tensor([1.0, 3, 3, 1])
    k2 = (k[:, None] * k[None]) / 16
    weight = torch.flip(k2, [0, 1])[None, None].expand(5, 1, 4, 4)
    for p in (0, 1, 2):
        ref = F.conv2d(F.pad(x, [p, p, p, p]), weight, groups=5)
        torch.testing.assert_close(upfirdn2d(x, k2, pad=(p, p)), ref, rtol=1e-6, atol=1e-6)
    ref = F.conv2d(F.pad(x, [2, 1, 2, 1]), weight, groups=5)  # asymmetric: padded explicitly
    torch.testing.assert_close(upfirdn2d(x, k2, pad=(2, 1)), ref, rtol=1e-6, atol=1e-6)


def test_constructor_rejects_bad_resolution():
    with pytest.raises(ValueError, match="power of two"):
        Generator(img_resolution=100)


def test_unfused_modconv_computes_the_same_images_and_gradients():
    """Generator.set_modconv(False) (scale + shared conv + demodulate) against the default grouped convolution:
    same images and the same gradients to ws, at every layer kind (3x3, up-sampling 3x3, toRGB)."""
    from helpers import tiny_generator

    G = tiny_generator(32)
    ws = torch.randn(3, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(0), requires_grad=True)
    fused = G.synthesis(ws)
    (g_fused,) = torch.autograd.grad(fused.square().sum(), ws)
    G.set_modconv(False)
    assert all(not m.fused for m in G.modules() if hasattr(m, "fused"))
    unfused = G.synthesis(ws)
    (g_unfused,) = torch.autograd.grad(unfused.square().sum(), ws)
    G.set_modconv(True)
    torch.testing.assert_close(unfused, fused, rtol=1e-5, atol=1e-5)
    assert (g_unfused - g_fused).norm() < 1e-5 * g_fused.norm()  # float round-off only
    assert torch.equal(G.synthesis(ws), fused)  # back to the default path


@pytest.mark.parametrize("upsample,demodulate", [(False, True), (True, True), (False, False)])
def test_modulated_conv_matches_rosinality_formula(upsample, demodulate):
    """The fused modulated convolution against rosinality's formulation written out: per-sample weights
    scale * W * style, demodulated by rsqrt(sum over in, k, k of their squares + 1e-8), as one grouped
    (transposed, then blurred) convolution; outputs and gradients to the latents agree to float round-off."""
    import torch.nn.functional as F

    from inversion.models.stylegan2 import ModulatedConv2d

    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, 16, demodulate=demodulate, upsample=upsample)
    x = torch.randn(3, 6, 8, 8)
    w = torch.randn(3, 16, requires_grad=True)
    out = conv(x, w)
    (g,) = torch.autograd.grad(out.square().sum(), w)

    styles = conv.modulation(w).view(3, 1, 6, 1, 1)
    weight = conv.scale * conv.weight * styles
    if demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(3, 5, 1, 1, 1)
    if upsample:
        weight = weight.transpose(1, 2).reshape(3 * 6, 5, 3, 3)
        ref = F.conv_transpose2d(x.reshape(1, 18, 8, 8), weight, stride=2, groups=3)
        ref = conv.blur(ref.view(3, 5, *ref.shape[2:]))
    else:
        ref = F.conv2d(x.reshape(1, 18, 8, 8), weight.reshape(15, 6, 3, 3), padding=1, groups=3).view(3, 5, 8, 8)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), w)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("noise_batch,clamp", [(1, None), (3, None), (0, None), (1, 0.5)])
def test_styled_conv_is_noise_bias_leaky_relu_and_gain(noise_batch, clamp):
    """StyledConv folds the sqrt(2) gain into its weights and adds noise and bias as one shift; the result is
    rosinality's conv -> + strength * noise -> + bias -> leaky ReLU(0.2) * sqrt(2) (-> clamp), with gradients."""
    import math

    import torch.nn.functional as F

    from inversion.models.stylegan2 import StyledConv

    torch.manual_seed(0)
    layer = StyledConv(6, 5, 3, 16, conv_clamp=clamp)
    with torch.no_grad():
        layer.noise.weight.fill_(0.7)
        layer.activate.bias.normal_()
    x, w = torch.randn(3, 6, 8, 8), torch.randn(3, 16, requires_grad=True)
    noise = torch.randn(noise_batch, 1, 8, 8) if noise_batch else None
    out = layer(x, w, noise)
    ref = layer.conv(x, w)
    if noise is not None:
        ref = ref + layer.noise.weight * noise
    ref = F.leaky_relu(ref + layer.activate.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)
    if clamp is not None:
        ref = ref.clamp(-clamp, clamp)
        assert (ref.abs() == clamp).any()  # the clamp is exercised
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    (g,) = torch.autograd.grad(out.square().sum(), w)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), w)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)
