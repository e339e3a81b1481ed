"""The inverter's optional fast paths against the plain fp32 path (the correctness guard of the performance
work): autocast bf16 within 1% relative error on images and latents, channels_last equal up to round-off."""

from __future__ import annotations

import copy

import pytest
import torch

from inversion import encoders as E
from inversion.inverter import Inverter
from inversion.models import demo_generator

TINY = [16, 16, 32, 32]


def _inverters():
    G = demo_generator()
    torch.manual_seed(0)
    kw = dict(num_ws=G.num_ws, w_dim=G.w_dim, input_size=64, channels=TINY)
    psp = Inverter(encoder=E.GradualStyleEncoder(**kw).eval(), generator=G, encoder_size=64)
    restyle = Inverter(encoder=E.BackboneEncoder(**kw).eval(), generator=G, num_iters=3, residual=True,
                       encoder_size=64)
    return {"pSp": psp, "ReStyle-3": restyle}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("name", ["pSp", "ReStyle-3"])
def test_fast_paths_match_the_plain_fp32_path(name):
    plain = _inverters()[name]
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        ref = plain.invert(x)
        bf16 = copy.deepcopy(plain).set_fast_path(autocast="bfloat16").invert(x)
        nhwc = copy.deepcopy(plain).set_fast_path(channels_last=True).invert(x)
        unfused = copy.deepcopy(plain).set_fast_path(fused_modconv=False).invert(x)
        both = copy.deepcopy(plain).set_fast_path(autocast="bfloat16", channels_last=True).invert(x)
    for out in (bf16, both):  # bf16 guard: relative error <= 1e-2 on images (and on ws), every ReStyle step
        for step, ref_step in zip(out.steps, ref.steps):
            assert _rel(step.images, ref_step.images) <= 1e-2 and _rel(step.ws, ref_step.ws) <= 1e-2
        assert _rel(out.images, ref.images) > 0  # bf16 really ran
    for out in (nhwc, unfused):  # same maths, other memory layout / convolution formulation
        for step, ref_step in zip(out.steps, ref.steps):
            torch.testing.assert_close(step.images, ref_step.images, rtol=1e-5, atol=1e-5)
    assert plain.autocast is None and not plain.channels_last  # the default stays plain fp32


def test_fast_path_switches_are_validated():
    inv = _inverters()["pSp"]
    with pytest.raises(ValueError, match="autocast"):
        inv.set_fast_path(autocast="int8")
    assert inv.set_fast_path(autocast=torch.bfloat16).autocast == torch.bfloat16


def test_compiled_inverter_matches_eager_and_keeps_its_state_dict_keys():
    """fast path compile: the encoder is compiled in place (same state-dict keys, so checkpoints and exports are
    unchanged) and the compiled loop computes the plain path's images. aot_eager traces through dynamo and
    AOTAutograd without generating code, which keeps this quick on CPU; inductor is what the GPU runs."""
    plain = _inverters()["ReStyle-3"]
    keys = list(plain.state_dict())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    compiled = copy.deepcopy(plain).set_fast_path(compile="default", compile_backend="aot_eager")
    assert list(compiled.state_dict()) == keys
    with torch.no_grad():
        ref, out = plain.invert(x), compiled.invert(x)
    for step, ref_step in zip(out.steps, ref.steps):
        torch.testing.assert_close(step.images, ref_step.images, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_keeps_the_generator_activations_in_bf16():
    """Under autocast the noise + bias shift is added in the activations' dtype, so the chain between
    convolutions stays bf16 (a float32 shift would promote every activation back to float32: twice the bytes)."""
    from inversion.models.stylegan2 import StyledConv, ToRGB

    G = demo_generator()
    dtypes = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
             for m in G.modules() if isinstance(m, (StyledConv, ToRGB))]
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        G.synthesis(ws, noise_mode="const")
        G.synthesis(ws, noise_mode="random")
    for h in hooks:
        h.remove()
    assert dtypes and set(dtypes) == {torch.bfloat16}
