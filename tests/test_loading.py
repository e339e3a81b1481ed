"""Loading generators from files in the official layouts, and the errors users see."""

from __future__ import annotations

import pytest
import torch

from inversion.models import CheckpointError, load_generator
from inversion.models.loading import sniff_format

from helpers import tiny_generator


def _rosinality_file(tmp_path, G, name="stylegan2.pt", with_avg=True, legacy=False):
    g_ema = {k: v for k, v in G.state_dict().items() if k != "w_avg"}
    obj = {"g_ema": g_ema}
    if with_avg:
        obj["latent_avg"] = G.w_avg.clone()
    path = tmp_path / name
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True])
def test_rosinality_file_loads_strictly_and_reproduces_images(tmp_path, legacy):
    G = tiny_generator(32)
    path = _rosinality_file(tmp_path, G, legacy=legacy)
    assert sniff_format(path) == "torch"
    L = load_generator(path, img_resolution=32, num_ws=8, w_dim=16)
    assert not L.training and not any(p.requires_grad for p in L.parameters())
    assert torch.equal(L.w_avg, G.w_avg)
    ws = G.mapping(torch.randn(3, 16))
    assert torch.equal(L.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"))
    assert torch.equal(L.mapping(torch.ones(1, 16), truncation_psi=0.5), G.mapping(torch.ones(1, 16), 0.5))


def test_file_name_does_not_matter(tmp_path):
    G = tiny_generator(32)
    path = _rosinality_file(tmp_path, G, name="weights.pkl")  # a torch file with a misleading suffix
    assert torch.equal(load_generator(path).w_avg, G.w_avg)


def test_missing_latent_avg_is_estimated_with_a_warning(tmp_path):
    G = tiny_generator(32)
    path = _rosinality_file(tmp_path, G, with_avg=False)
    with pytest.warns(UserWarning, match="latent_avg"):
        L = load_generator(path)
    with torch.no_grad():
        ref = G.style(torch.randn(20_000, 16, generator=torch.Generator().manual_seed(1))).mean(0)
    assert (L.w_avg - ref).norm() / ref.norm() < 0.05


def test_psp_family_checkpoint_decoder_loads(tmp_path):
    G = tiny_generator(32)
    state = {f"decoder.{k}": v for k, v in G.state_dict().items() if k != "w_avg"}
    state["encoder.some.weight"] = torch.zeros(3)
    path = tmp_path / "psp.pt"
    torch.save({"state_dict": state, "latent_avg": G.w_avg.repeat(8, 1), "opts": {"output_size": 32}}, path)
    L = load_generator(path)
    assert torch.equal(L.w_avg, G.w_avg)
    ws = G.mapping(torch.randn(2, 16))
    assert torch.equal(L.synthesis(ws), G.synthesis(ws))


def test_missing_file_names_it_and_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_generator(tmp_path / "stylegan2-ffhq-config-f.pt")
    assert "stylegan2-ffhq-config-f.pt" in str(e.value) and "rosinality" in str(e.value)


def test_unknown_format(tmp_path):
    path = tmp_path / "g.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="unknown file format"):
        load_generator(path)


def test_resolution_and_num_ws_mismatch_is_one_clear_error(tmp_path):
    path = _rosinality_file(tmp_path, tiny_generator(32))
    with pytest.raises(CheckpointError) as e:
        load_generator(path, img_resolution=64, num_ws=10)
    msg = str(e.value)
    assert str(path) in msg and "resolution 32 in the file, 64 in the config" in msg and "num_ws 8" in msg


def test_wrong_keys_and_shapes_are_reported(tmp_path):
    G = tiny_generator(32)
    g_ema = {k: v for k, v in G.state_dict().items() if k != "w_avg"}
    g_ema["extra.weight"] = torch.zeros(1)
    torch.save({"g_ema": g_ema}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="unexpected \\['extra.weight'\\]"):
        load_generator(tmp_path / "a.pt")
    g_ema.pop("extra.weight")
    g_ema["conv1.activate.bias"] = torch.zeros(5)
    torch.save({"g_ema": g_ema, "latent_avg": G.w_avg}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="conv1.activate.bias"):
        load_generator(tmp_path / "b.pt")
    torch.save({"model": {}}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="without a generator"):
        load_generator(tmp_path / "c.pt")


def test_torch_files_are_loaded_without_running_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"g_ema": Evil()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_generator(path)
    assert not marker.exists()


def _conditional_generator(c_dim=3):
    from inversion.models import ConditionalGenerator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        G = ConditionalGenerator(c_dim=c_dim, embed_features=8, z_dim=16, w_dim=16, img_resolution=16, n_mlp=2,
                                 channel_max=8)
    G.w_avg.normal_()
    return G.eval().requires_grad_(False)


def test_conditional_state_dicts_in_our_layout_load(tmp_path):
    """``style.embed.*`` marks a conditional generator (c_dim, embed_features from its shape); its w_avg comes from
    the file (``w_avg`` or ``latent_avg``) and is never estimated."""
    from inversion.models import ConditionalGenerator

    G = _conditional_generator()
    torch.save({"g_ema": G.state_dict()}, tmp_path / "cond.pt")
    L = load_generator(tmp_path / "cond.pt")
    assert isinstance(L, ConditionalGenerator) and (L.c_dim, L.embed_features, L.z_dim) == (3, 8, 16)
    assert torch.equal(L.w_avg, G.w_avg)
    z, c = torch.randn(2, 16), torch.eye(3)[:2]
    assert torch.equal(L.mapping(z, c, truncation_psi=0.6), G.mapping(z, c, truncation_psi=0.6))
    g_ema = {k: v for k, v in G.state_dict().items() if k != "w_avg"}
    torch.save({"g_ema": g_ema, "latent_avg": G.w_avg + 1}, tmp_path / "avg.pt")
    assert torch.equal(load_generator(tmp_path / "avg.pt").w_avg, G.w_avg + 1)
    torch.save({"g_ema": g_ema}, tmp_path / "no_avg.pt")
    with pytest.raises(CheckpointError, match=r"conditional generator \(c_dim=3\) without 'latent_avg' or 'w_avg'"):
        load_generator(tmp_path / "no_avg.pt")
