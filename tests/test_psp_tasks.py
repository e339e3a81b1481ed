"""pSp's image-to-image task checkpoints (sketch / segmentation / RGB tasks) and multi-modal synthesis by style
mixing, against an oracle written from pixel2style2pixel's code (``tests/psp_oracle.py``), on random weights saved in
the official file layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from psp_oracle import PSPNet, inference_input, style_mixing, to_one_hot

import inversion
from inversion.checkpoints import load_inverter, save_inverter
from inversion.cli.invert import main as invert_main
from inversion.encoders import GradualStyleEncoder
from inversion.models import CheckpointError
from inversion.style_mixing import inject_styles, parse_latent_mask
from inversion.tasks import InputSpec

from helpers import tiny_generator

TINY = dict(channels=(16, 16, 32, 32))
# task: (dataset_type, label_nc, input_nc, options of the README's training command beyond the ffhq_encode ones)
TASKS = {
    "sketch": ("celebs_sketch_to_face", 1, 1, dict(id_lambda=0, w_norm_lambda=0.005)),
    "seg": ("celebs_seg_to_face", 19, 19, dict(id_lambda=0, w_norm_lambda=0.005)),
    "super_res": ("celebs_super_resolution", 0, 3, dict(id_lambda=0.1, w_norm_lambda=0.005,
                                                         resize_factors="1,2,4,8,16,32")),
}
MASK = [3, 5, 6, 7]  # of the 8 W+ layers of the 32 px generator


def _task_file(tmp_path, task, legacy=False):
    """An official pSp task checkpoint with random weights (tiny encoder widths, 32 px decoder)."""
    dataset_type, label_nc, input_nc, extra = TASKS[task]
    G = tiny_generator(32, seed=1)
    torch.manual_seed(2)
    enc = GradualStyleEncoder(num_ws=G.num_ws, w_dim=G.w_dim, in_channels=input_nc, input_size=256, **TINY)
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in G.state_dict().items() if k != "w_avg"})
    latent_avg = G.w_avg + 0.1 * torch.randn(G.num_ws, G.w_dim)
    opts = dict(dataset_type=dataset_type, encoder_type="GradualStyleEncoder", label_nc=label_nc, input_nc=input_nc,
                output_size=32, start_from_latent_avg=True, learn_in_w=False, lpips_lambda=0.8, l2_lambda=1.0,
                batch_size=8, optim_name="ranger", learning_rate=0.0001, exp_dir="/x", **extra)
    if legacy:  # files written before pSp had these options (the inference scripts default them)
        del opts["output_size"], opts["learn_in_w"]
    path = tmp_path / f"psp_{dataset_type}.pt"
    torch.save({"state_dict": state, "latent_avg": latent_avg, "opts": opts}, path)
    return path


def _oracle(path, dtype=torch.float32):
    opts = torch.load(path, weights_only=True)["opts"]
    G = tiny_generator(32, seed=9)  # other weights: everything must come from the file
    enc = GradualStyleEncoder(num_ws=G.num_ws, w_dim=G.w_dim, in_channels=opts["input_nc"], input_size=256, **TINY)
    return PSPNet(path, enc.eval(), G).to(dtype).eval()


def _raw_inputs(task, n=2, seed=0):
    """(what a user hands ``input_spec.prepare``, what the official transforms give the network)."""
    g = torch.Generator().manual_seed(seed)
    if task == "seg":
        labels = torch.randint(0, 19, (n, 256, 256), generator=g)
        return labels, torch.stack([torch.from_numpy(to_one_hot(a.numpy(), 19)).permute(2, 0, 1).float()
                                    for a in labels])
    x = torch.rand(n, 1 if task == "sketch" else 3, 256, 256, generator=g)
    x = x if task == "sketch" else x * 2 - 1
    return x, x


def _max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("task", list(TASKS))
def test_task_checkpoint_reproduces_psp_forward(tmp_path, task, dtype):
    """load_inverter reads input_nc / label_nc / output_size / start_from_latent_avg; .invert on the prepared input
    equals pSp's net(x, resize=False, randomize_noise=False, return_latents=True)."""
    path = _task_file(tmp_path, task)
    inv = load_inverter(path, dtype=dtype)
    label_nc, input_nc = TASKS[task][1:3]
    spec = inv.input_spec
    assert spec.channels == input_nc and inv.encoder.in_channels == input_nc
    assert spec.mode == {0: "rgb", 1: "gray"}.get(label_nc, "labels")
    assert spec.value_range == ((-1.0, 1.0) if label_nc == 0 else (0.0, 1.0))
    raw, x = _raw_inputs(task)
    net = _oracle(path, dtype)
    with torch.no_grad():
        out = inv.invert(spec.prepare(raw, dtype=dtype))
        images, codes = net(x.to(dtype), resize=False, randomize_noise=False, return_latents=True)
    tol_ws, tol_img = (1e-6, 1e-5) if dtype == torch.float32 else (1e-12, 1e-12)
    assert out.ws.dtype == dtype and out.images.shape == (2, 3, 32, 32)
    assert _max_err(out.ws, codes) <= tol_ws and _max_err(out.images, images) <= tol_img
    with pytest.raises(ValueError, match=f"x must be \\[N, {input_nc}, H, W\\]"):
        inv.invert(torch.zeros(1, 2, 256, 256, dtype=dtype))


def test_legacy_options_and_inconsistent_channels(tmp_path):
    path = _task_file(tmp_path, "seg", legacy=True)
    inv = load_inverter(path)
    assert inv.input_spec == InputSpec("labels", 19, (0.0, 1.0)) and inv.generator.img_resolution == 32
    ckpt = torch.load(path, weights_only=True)
    torch.save(dict(ckpt, opts=dict(ckpt["opts"], label_nc=19, input_nc=3)), tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="label_nc=19 needs input_nc=19, got input_nc=3"):
        load_inverter(tmp_path / "bad.pt")


@pytest.mark.parametrize("alpha", [None, 0.3])
@pytest.mark.parametrize("task", ["seg", "super_res"])
def test_multimodal_matches_psp_style_mixing(tmp_path, task, alpha):
    """Same z's: the mixed codes and images equal scripts/style_mixing.py's (with randomize_noise=False); layers
    outside the mask are bit-identical to the inversion."""
    path = _task_file(tmp_path, task)
    inv = load_inverter(path)
    raw, x = _raw_inputs(task)
    z = torch.randn(2, 3, inv.generator.z_dim, generator=torch.Generator().manual_seed(5))
    mm = inversion.multimodal(inv, inv.input_spec.prepare(raw), MASK, mix_alpha=alpha, z=z)
    with torch.no_grad():
        images, codes = style_mixing(_oracle(path), x, z, MASK, mix_alpha=alpha)
        base = inv.invert(inv.input_spec.prepare(raw)).ws
    assert mm.ws.shape == (2, 3, 8, 16) and mm.images.shape == (2, 3, 3, 32, 32)
    assert _max_err(mm.ws, codes) <= 1e-6 and _max_err(mm.images, images) <= 1e-5
    keep = [i for i in range(8) if i not in MASK]
    assert torch.equal(mm.ws[:, :, keep], base[:, None, keep].expand(-1, 3, -1, -1))
    assert torch.equal(mm.base_ws, base) and torch.equal(mm.z, z)
    assert not torch.equal(mm.ws[:, 0, MASK], mm.ws[:, 1, MASK])  # different z, different styles


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_image_multimodal_is_bit_identical(tmp_path, dtype):
    """pSp mixes one image at a time: for one image (same batch shapes) the codes and images are bit-identical."""
    path = _task_file(tmp_path, "sketch")
    inv = load_inverter(path, dtype=dtype)
    raw, x = _raw_inputs("sketch", n=1)
    z = torch.randn(1, 2, inv.generator.z_dim, dtype=dtype, generator=torch.Generator().manual_seed(1))
    mm = inv.multimodal(raw.to(dtype), "5:8", mix_alpha=0.7, z=z)
    with torch.no_grad():
        images, codes = style_mixing(_oracle(path, dtype), x, z, [5, 6, 7], 0.7, dtype=dtype)
    assert torch.equal(mm.ws, codes) and torch.equal(mm.images, images)


def test_inject_styles_changes_only_the_masked_layers_and_alpha_interpolates():
    g = torch.Generator().manual_seed(0)
    ws, inj = torch.randn(2, 8, 16, generator=g), torch.randn(2, 8, 16, generator=g)
    ws_copy = ws.clone()
    keep = [i for i in range(8) if i not in MASK]
    out = inject_styles(ws, inj, MASK)
    assert torch.equal(out[:, MASK], inj[:, MASK]) and torch.equal(out[:, keep], ws[:, keep])
    assert torch.equal(ws, ws_copy)  # not in place
    assert torch.equal(inject_styles(ws, inj, MASK, alpha=0.0), ws)
    assert torch.equal(inject_styles(ws, inj, MASK, alpha=1.0), out)
    for a in (0.25, 0.5, -0.5, 1.5):
        mixed = inject_styles(ws, inj, MASK, alpha=a)
        assert torch.equal(mixed[:, keep], ws[:, keep])
        assert torch.allclose(mixed[:, MASK], torch.lerp(ws[:, MASK], inj[:, MASK], a), atol=1e-6)
    # one shared injected style for a [N, K, ...] batch broadcasts
    assert inject_styles(ws[:, None].expand(-1, 3, -1, -1), inj[0], [1]).shape == (2, 3, 8, 16)


def test_latent_mask_errors_and_seeded_draws(tmp_path):
    assert parse_latent_mask("8,9,10", 18) == [8, 9, 10] and parse_latent_mask("8:18", 18) == list(range(8, 18))
    assert parse_latent_mask("1, 4:6", 18) == [1, 4, 5] and parse_latent_mask((3, 1), 18) == [1, 3]
    for bad, msg in [("18", r"\[18\] out of range: this generator has 18 W\+ layers, indices 0..17"),
                     ("-1", "out of range"), ("3,3", "repeats layers"), ("", "empty"), ("a,b", "'a' is not")]:
        with pytest.raises(ValueError, match=msg):
            parse_latent_mask(bad, 18)
    inv = load_inverter(_task_file(tmp_path, "super_res"))
    x, _ = _raw_inputs("super_res", n=2)
    with pytest.raises(ValueError, match="indices 0..7"):
        inv.multimodal(x, [8])
    with pytest.raises(ValueError, match="inject_ws must be"):
        inv.multimodal(x, [1], inject_ws=torch.zeros(3, 7, 16))
    a = inv.multimodal(x, [6, 7], n_outputs=2, seed=3, render=False)
    b = inv.multimodal(x, [6, 7], n_outputs=2, seed=3, render=False)
    c = inv.multimodal(x, [6, 7], n_outputs=2, seed=4, render=False)
    assert torch.equal(a.ws, b.ws) and not torch.equal(a.ws, c.ws) and a.images is None
    g = torch.Generator().manual_seed(3)  # z drawn image by image: [n_outputs, z_dim] each
    assert torch.equal(a.z, torch.stack([torch.randn(2, 16, generator=g) for _ in range(2)]))
    ws = inv.generator.mapping(torch.randn(2, 16))
    given = inv.multimodal(x, [0, 1], inject_ws=ws, render=False)  # given ws, shared by every image
    assert given.z is None and torch.equal(given.ws[:, :, [0, 1]], ws[None, :, [0, 1]].expand(2, -1, -1, -1))


def _png(array, path, mode=None):
    Image.fromarray(array, mode).save(path) if mode is None else Image.fromarray(array).convert(mode).save(path)
    return path


def test_reading_task_inputs_matches_the_official_transforms(tmp_path):
    """At 256 px our file reading + prepare equals transform_inference exactly; label maps accept L, P and
    gray-RGB files; out-of-range classes and colour label maps are errors naming the file."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, (256, 256)).astype(np.uint8)
    sketch = rng.integers(0, 256, (256, 256)).astype(np.uint8)
    cases = {
        "seg": [_png(labels, tmp_path / "seg_l.png")],
        "sketch": [_png(sketch, tmp_path / "sketch.png"), _png(np.stack([sketch] * 3, -1), tmp_path / "sk_rgb.png")],
    }
    palette = Image.fromarray(labels, "P")
    palette.putpalette([v for k in range(256) for v in ((k * 37) % 256, (k * 91) % 256, (k * 13) % 256)])
    palette.save(tmp_path / "seg_p.png")
    gray_rgb = _png(np.stack([labels] * 3, -1), tmp_path / "seg_rgb.png")
    for task, files in cases.items():
        label_nc = TASKS[task][1]
        spec = InputSpec.from_official_opts({"label_nc": label_nc, "input_nc": TASKS[task][2]})
        for f in files:
            ours = spec.prepare(spec.read(f)[None], 256)[0]
            assert torch.equal(ours, inference_input(f, {"label_nc": label_nc})), f
    seg = InputSpec("labels", 19, (0.0, 1.0))
    want = inference_input(tmp_path / "seg_l.png", {"label_nc": 19})
    for f in (tmp_path / "seg_p.png", gray_rgb):  # palette indices / gray RGB values are the classes
        assert torch.equal(seg.prepare(seg.read(f)[None], 256)[0], want)
    big = np.kron(labels[:64, :64], np.ones((8, 8), np.uint8))  # 512 px map of 8x8 blocks -> nearest keeps classes
    out = seg.prepare(seg.read(_png(big, tmp_path / "big.png"))[None], 256)
    assert torch.equal(out.argmax(1)[0], torch.from_numpy(np.kron(labels[:64, :64], np.ones((4, 4), np.uint8))).long())
    with pytest.raises(ValueError, match="class indices 25..25; this encoder takes 0..18"):
        seg.prepare(seg.read(_png(np.full((8, 8), 25, np.uint8), tmp_path / "c25.png"))[None])
    colour = rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)
    with pytest.raises(ValueError, match="colour.png: a label map must be a single-channel image"):
        seg.read(_png(colour, tmp_path / "colour.png"))
    assert seg.display(out).shape == (1, 3, 256, 256)


def test_export_keeps_the_input_spec(tmp_path):
    path = _task_file(tmp_path, "seg")
    inv = load_inverter(path)
    export = save_inverter(inv, tmp_path / "export.pt", encoder_config=inv.encoder_config,
                           generator_config={"_target_": "inversion.load_generator", "path": str(path)})
    again = load_inverter(export)
    assert again.input_spec == inv.input_spec
    raw, _ = _raw_inputs("seg", n=1)
    with torch.no_grad():
        assert torch.equal(again.invert(again.input_spec.prepare(raw)).ws, inv.invert(inv.input_spec.prepare(raw)).ws)


@pytest.mark.parametrize("task", ["sketch", "seg"])
def test_official_export_writes_input_nc_and_label_nc(tmp_path, task):
    """export_official of a task inverter writes the file's label_nc / input_nc; pSp's loader and ours read it."""
    from inversion.export import export_official

    inv = load_inverter(_task_file(tmp_path, task))
    out = export_official(inv, tmp_path / "again.pt", dataset_type=TASKS[task][0], allow_nonstandard=True)
    opts = torch.load(out, weights_only=True)["opts"]
    assert (opts["dataset_type"], opts["label_nc"], opts["input_nc"]) == TASKS[task][:3]
    again = load_inverter(out)
    assert again.input_spec == inv.input_spec
    raw, x = _raw_inputs(task, n=1)
    with torch.no_grad():
        images, codes = _oracle(out)(x, resize=False, randomize_noise=False, return_latents=True)
        assert torch.equal(again.invert(again.input_spec.prepare(raw)).ws, codes)


def test_cli_multimodal_on_a_segmentation_checkpoint(tmp_path, capsys):
    path = _task_file(tmp_path, "seg")
    rng = np.random.default_rng(1)
    folder = tmp_path / "maps"
    folder.mkdir()
    maps = {f"face{i}": rng.integers(0, 19, (256, 256)).astype(np.uint8) for i in range(3)}
    for name, a in maps.items():
        _png(a, folder / f"{name}.png")
    _png(np.full((16, 16), 30, np.uint8), folder / "zbad.png")  # class 30 >= label_nc: skipped with the reason
    out = tmp_path / "out"
    args = ["--checkpoint", str(path), "--input", str(folder), "--output", str(out), "--device", "cpu",
            "--no-progress", "--batch-size", "2"]
    rc = invert_main([*args, "--latent-mask", "5,6,7", "--mix-alpha", "0.5", "--n-outputs", "3", "--mix-seed", "4"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    settings = summary["settings"]
    assert settings["input_mode"] == "labels" and settings["input_channels"] == 19
    assert settings["latent_mask"] == [5, 6, 7] and settings["mix_alpha"] == 0.5 and settings["n_outputs"] == 3
    assert summary["num_processed"] == 3 and "class indices 30..30" in summary["skipped"][0]["reason"]
    net = _oracle(path)
    g = torch.Generator().manual_seed(4)
    for entry in summary["processed"]:
        name = entry["name"]
        assert entry["multimodal"] == [f"multimodal/{name}/{k}.png" for k in range(3)]
        record = torch.load(out / "multimodal" / name / "latents.pt", weights_only=True)
        assert torch.equal(record["z"], torch.randn(3, 16, generator=g))  # drawn image by image, in input order
        x = inference_input(folder / f"{name}.png", {"label_nc": 19})[None]
        with torch.no_grad():
            images, codes = style_mixing(net, x, record["z"][None], [5, 6, 7], mix_alpha=0.5)
        assert _max_err(record["ws"], codes[0]) <= 1e-6
        base = torch.load(out / "latents" / f"{name}.pt", weights_only=True)["ws"]
        assert torch.equal(record["ws"][:, :5], base[None, :5].expand(3, -1, -1))
        for k in range(3):
            png = np.asarray(Image.open(out / "multimodal" / name / f"{k}.png"), dtype=np.float64)
            want = ((images[0, k].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
            assert np.abs(png - want).max() <= 1
    assert Image.open(out / "grid.png").size == (5 * 256 + 4 * 2, 3 * 256 + 2 * 2)  # map | recon | 3 outputs

    rc = invert_main([*args, "--latent-mask", "5,8"])
    assert rc == 2 and "[8] out of range" in capsys.readouterr().err
    assert invert_main([*args, "--mix-alpha", "0.5"]) == 2
    assert "need --latent-mask" in capsys.readouterr().err
    assert invert_main([*args, "--align"]) == 2
    assert "reads labels inputs" in capsys.readouterr().err
