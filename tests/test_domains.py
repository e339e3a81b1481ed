"""Non-face domains: non-square encoder inputs and the generator's content box (e4e / ReStyle cars), the domain
experiments' official settings, and official cars checkpoints replayed against ReStyle's ``run_on_batch``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inversion import Inverter, load_inverter
from inversion.config import compose
from inversion.encoders import Encoder4Editing, ResNetBackboneEncoder

from helpers import tiny_generator

TINY = dict(channels=(16, 16, 32, 32))


def _images(n, h, w, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_non_square_encoders_read_height_by_width_inputs():
    """e4e's FPN and ReStyle's ResNet-34 heads reach 1x1 from a 192x256 input (12x16 at 1/16) as from 256x256."""
    for enc in (Encoder4Editing(num_ws=16, w_dim=32, input_size=[192, 256], **TINY),
                ResNetBackboneEncoder(num_ws=16, w_dim=32, in_channels=6, input_size=[192, 256], **TINY)):
        x = torch.randn(2, enc.in_channels, 192, 256)
        assert enc(x).shape == (2, 16, 32)
        with pytest.raises(AssertionError, match="input"):
            enc(torch.randn(2, enc.in_channels, 256, 192))
    for bad in ([100, 256], [192, 320], [8, 16]):
        with pytest.raises(ValueError, match="input_size"):
            ResNetBackboneEncoder(num_ws=2, w_dim=8, input_size=bad, **TINY)


def test_the_content_box_crops_every_render_and_restyle_feeds_the_crop_back():
    """Renders are cropped to the picture (hand-computed: rows 8:56 of a 64 px frame); the first input is the crop
    of latent_avg's image, each later one the crop of the previous render, both pooled to the encoder's 48x64."""
    G = tiny_generator(64)
    torch.manual_seed(0)
    enc = ResNetBackboneEncoder(num_ws=G.num_ws, w_dim=G.w_dim, in_channels=6, input_size=[48, 64], **TINY).eval()
    inv = Inverter(encoder=enc, generator=G, num_iters=2, residual=True, encoder_size=[48, 64],
                   content_box=[8, 56, 0, 64])
    x = _images(2, 48, 64)
    seen = []
    enc.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        steps = list(inv.iterate(x))
        full = [G.synthesis(s.ws, noise_mode="const") for s in steps]
        avg = G.synthesis(inv.latent_avg[None], noise_mode="const")
    for step, img in zip(steps, full):
        assert step.images.shape == (2, 3, 48, 64) and torch.equal(step.images, img[:, :, 8:56, :])
    assert torch.equal(seen[0][:, :3], x) and torch.equal(seen[1][:, :3], x)
    assert torch.allclose(seen[0][:, 3:], F.adaptive_avg_pool2d(avg[:, :, 8:56], (48, 64)).expand(2, -1, -1, -1))
    assert torch.allclose(seen[1][:, 3:], F.adaptive_avg_pool2d(full[0][:, :, 8:56], (48, 64)))
    with pytest.raises(ValueError, match="48x64"):
        inv.invert(_images(2, 64, 64))
    with pytest.raises(ValueError, match="content_box"):
        Inverter(encoder=enc, generator=G, encoder_size=[48, 64], content_box=[8, 72, 0, 64])


def test_cars_training_losses_compare_the_cropped_picture(train_config, monkeypatch):
    """restyle_psp_cars at tiny size: the encoder reads [N, 6, 32, 64], every loss compares the render's picture
    (rows 4:28 of the 32 px frame) pooled to the loss size with the batch at that size (hand-computed L2)."""
    from inversion.imageio import resize_images
    from inversion.training import InversionModule, train

    cfg = train_config("restyle_psp_cars", "module.noise_mode=const")
    assert list(cfg.encoder.content_box) == [4, 28, 0, 32] and list(cfg.module.loss_size) == [48, 64]
    checked = []
    real = InversionModule.step_losses

    def spy(self, step, target, batch):
        total, terms = real(self, step, target, batch)
        G = self.inverter.generator
        with torch.no_grad():
            picture = G.synthesis(step.ws, noise_mode="const")[:, :, 4:28, :]
            y_hat = F.adaptive_avg_pool2d(picture, (48, 64))
            want = F.mse_loss(y_hat, resize_images(batch["image"], (48, 64)))
        assert batch["image"].shape[-2:] == (32, 64) and target.shape[-2:] == (48, 64)
        assert torch.allclose(step.images, picture) and torch.allclose(terms["l2"], want, rtol=1e-5)
        checked.append(True)
        return total, terms

    monkeypatch.setattr(InversionModule, "step_losses", spy)
    assert train(cfg)["global_step"] == 2
    assert len(checked) >= 4  # 2 steps x 2 ReStyle iterations (+ validation)


@pytest.mark.parametrize("experiment,encoder,generator,box", [
    ("restyle_psp_cars", "ResNetBackboneEncoder", "stylegan2_cars", [64, 448, 0, 512]),
    ("restyle_e4e_cars", "ResNetProgressiveBackboneEncoder", "stylegan2_cars", [64, 448, 0, 512]),
    ("e4e_cars", "Encoder4Editing", "stylegan2_cars", [64, 448, 0, 512]),
    ("restyle_psp_church", "ResNetBackboneEncoder", "stylegan2_church", None),
    ("restyle_e4e_horse", "ResNetProgressiveBackboneEncoder", "stylegan2_horse", None),
    ("restyle_psp_afhq_wild", "ResNetBackboneEncoder", "stylegan2_afhq_wild", None),
])
def test_domain_experiments_carry_the_official_settings(experiment, encoder, generator, box):
    """restyle-encoder README (non-face: ResNet-34 backbones, --id_lambda 0 --moco_lambda 0.5) and encoder4editing's
    cars command (--id_lambda 0.5 = MoCo on non-face data, 200k steps, validation every 10k)."""
    from omegaconf import OmegaConf

    cfg = compose("train", [f"experiment={experiment}"])
    assert cfg.encoder.net._target_.endswith(encoder)
    assert OmegaConf.to_container(cfg.generator, resolve=False)["path"] == f"${{paths.{generator}}}"
    moco = cfg.loss.moco if "moco" in cfg.loss else cfg.loss.id
    assert moco.module._target_.startswith("inversion.losses.FeatureSimilarityLoss") and moco.module.path is None
    assert moco.weight == (0.5 if experiment == "e4e_cars" or "moco" in cfg.loss else None)
    assert (cfg.loss.l2.weight, cfg.loss.lpips.weight) == (1.0, 0.8) and cfg.optimizer.lr == 1e-4
    if "moco" in cfg.loss:
        assert cfg.loss.id.weight == 0 and OmegaConf.to_container(cfg.encoder.backbone, resolve=False)[
            "path"] == "${paths.resnet34}"
    if box is None:
        assert cfg.encoder.content_box is None and cfg.encoder.net.input_size == 256
    else:
        assert list(cfg.encoder.content_box) == box and list(cfg.encoder.net.input_size) == [192, 256]
        assert list(cfg.module.loss_size) == [192, 256] and cfg.data.train.ids == "cars_train"
        assert list(cfg.data.train.transform.transforms[0].size) == [192, 256]
    if experiment == "e4e_cars":
        assert (cfg.trainer.max_steps, cfg.trainer.val_check_interval) == (200000, 10000)


def test_an_official_cars_checkpoint_replays_restyle_run_on_batch(tmp_path):
    """restyle-encoder's cars files (dataset_type cars_encode): 192x256 inputs, the average image and every fed-back
    render cropped to rows R/8 .. 7R/8 (their [64:448] of 512) and pooled to (192, 256), outputs cropped too."""
    G = tiny_generator(64)
    torch.manual_seed(1)
    enc = ResNetBackboneEncoder(num_ws=G.num_ws, w_dim=G.w_dim, in_channels=6, input_size=[192, 256], **TINY).eval()
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in G.state_dict().items() if k != "w_avg"})
    latent_avg = (G.w_avg + 0.1).repeat(G.num_ws, 1)
    opts = {"encoder_type": "ResNetBackboneEncoder", "input_nc": 6, "output_size": 64, "start_from_latent_avg": True,
            "n_iters_per_batch": 3, "dataset_type": "cars_encode"}
    torch.save({"state_dict": state, "latent_avg": latent_avg, "opts": opts}, tmp_path / "restyle_cars.pt")
    inv = load_inverter(tmp_path / "restyle_cars.pt")
    assert inv.encoder_hw == (192, 256) and inv.content_box == (8, 56, 0, 64)
    x = _images(2, 192, 256)
    r = G.img_resolution

    def crop(img):  # run_on_batch: y_hat[:, :, 64:448, :] for the 512 px cars generator
        return img[:, :, r // 8: r * 7 // 8, :]

    with torch.no_grad():
        out = inv.invert(x)
        avg = F.adaptive_avg_pool2d(crop(G.synthesis(latent_avg[None], noise_mode="const")), (192, 256))
        x_in, latent = torch.cat([x, avg.repeat(2, 1, 1, 1)], 1), None
        for step in out.steps:
            codes = enc(x_in) + (latent if latent is not None else latent_avg.repeat(2, 1, 1))
            y_hat = crop(G.synthesis(codes, noise_mode="const"))
            assert torch.allclose(step.ws, codes, atol=1e-5) and torch.allclose(step.images, y_hat, atol=1e-4)
            latent = codes
            x_in = torch.cat([x, F.adaptive_avg_pool2d(y_hat, (192, 256))], 1)
    assert len(out.steps) == 3 and out.images.shape == (2, 3, 48, 64)


def test_a_folder_dataset_without_ids_reads_every_image_in_sorted_order(tmp_path):
    """data=folders (LSUN / AFHQ folders): ``ids: null`` lists every image under the root, as pSp's make_dataset."""
    from PIL import Image

    from inversion.data import ImageIdDataset

    for rel in ("b/2.png", "a/10.jpg", "a/9.png", "c.webp"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (len(rel) * 20, 0, 0)).save(tmp_path / rel)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = ImageIdDataset(tmp_path, None)
    assert ds.ids == ["a/10.jpg", "a/9.png", "b/2.png", "c.webp"] and len(ds) == 4
    assert ds[1]["path"] == str(tmp_path / "a/9.png") and ds[1]["image"].shape == (3, 8, 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        ImageIdDataset(tmp_path / "empty", None)


def test_cars_evaluation_compares_192x256_pictures_with_moco(tmp_path):
    """eval_data=cars_test: photos squashed to the encoder's height x width, reconstructions cropped to the picture,
    both compared at the official 192x256 with MoCo similarity instead of face ID (hand-computed L2 of one image)."""
    import csv

    from PIL import Image

    from inversion.checkpoints import save_inverter
    from inversion.evaluation import evaluate
    from inversion.imageio import from_pil, quantize, read_rgb, resize_images
    from inversion.models import demo_generator

    gen_cfg = {"_target_": "inversion.models.demo_generator", "img_resolution": 64}
    G = demo_generator(img_resolution=64)
    kwargs = dict(num_ws=G.num_ws, w_dim=G.w_dim, in_channels=6, input_size=[48, 64], **TINY)
    torch.manual_seed(0)
    inv = Inverter(encoder=ResNetBackboneEncoder(**kwargs).eval(), generator=G, num_iters=2, residual=True,
                   encoder_size=[48, 64], content_box=[8, 56, 0, 64])
    ckpt = save_inverter(inv, tmp_path / "cars.pt", generator_config=gen_cfg,
                         encoder_config={"_target_": "inversion.encoders.ResNetBackboneEncoder", **kwargs})
    photos = tmp_path / "cars_test"
    photos.mkdir()
    rng = torch.Generator().manual_seed(2)
    for i in (1, 2):  # the first ids of data_splits/cars_test, 60x80 photos
        pixels = (torch.rand(60, 80, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(photos / f"{i:05d}.png")
    out = tmp_path / "eval"
    result = evaluate(compose("evaluate", [
        f"checkpoint={ckpt}", "eval_data=cars_test", f"data_root={photos}", "eval_data.expect.img_resolution=64",
        "limit=2", "batch_size=2", "latency.enabled=false", "progress=false", "report.grid_images=2",
        "net@metrics.moco_sim.module=random_moco", "metrics.lpips=null", "eval_data.num_workers=0",
        f"out_dir={out}"]))
    import json

    assert len(result["metrics"]["per_iteration"]) == 2
    protocol = json.loads((out / "metrics.json").read_text())["protocol"]
    assert protocol["size"] == [192, 256] and "192x256" in protocol["resize"]
    with open(out / "per_image.csv") as f:
        rows = [r for r in csv.DictReader(f)]
    last = [r for r in rows if r["id"] == "00001" and int(r["iteration"]) == 2]
    assert len(last) == 1 and "moco_sim" in last[0] and "id_sim" not in last[0]
    photo = from_pil(read_rgb(photos / "00001.png"))[None]
    with torch.no_grad():
        x = resize_images(photo, (48, 64), "bilinear_antialias")
        pred = quantize(resize_images(inv.invert(x).images, (192, 256), "bilinear_antialias"))
    target = quantize(resize_images(photo, (192, 256), "bilinear_antialias"))
    assert abs(float(last[0]["l2"]) - float((pred - target).square().mean())) < 1e-5


def test_a_cars_model_exports_to_the_official_layout_as_cars_encode(tmp_path):
    """export --to official of a cars ReStyle model writes dataset_type cars_encode (the official code's 192x256
    inputs and [64:448] crop, read back identically); another dataset_type is refused by name."""
    from inversion.export import export_official

    G = tiny_generator(64)
    torch.manual_seed(0)
    enc = ResNetBackboneEncoder(num_ws=G.num_ws, w_dim=G.w_dim, in_channels=6, input_size=[192, 256], **TINY).eval()
    inv = Inverter(encoder=enc, generator=G, num_iters=2, residual=True, encoder_size=[192, 256],
                   content_box=[8, 56, 0, 64])
    path = export_official(inv, tmp_path / "cars.pt", dataset_type="cars_encode", allow_nonstandard=True)  # tiny
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["opts"]["dataset_type"] == "cars_encode"
    back = load_inverter(path)
    assert back.encoder_hw == (192, 256) and back.content_box == (8, 56, 0, 64)
    x = _images(2, 192, 256)
    with torch.no_grad():
        assert torch.allclose(back.invert(x).images, inv.invert(x).images, atol=1e-5)
    with pytest.raises(ValueError, match="cars_encode"):
        export_official(inv, tmp_path / "ffhq.pt", dataset_type="ffhq_encode", allow_nonstandard=True)


def test_refinement_of_a_letterboxed_generator_is_refused_by_name():
    """Refiners render whole frames; with a content box (cars) that would fit the letterbox: a clear error."""
    from inversion.losses import MSELoss
    from inversion.reconstruct import reconstruct
    from inversion.refine import Refiner

    G = tiny_generator(64)
    enc = ResNetBackboneEncoder(num_ws=G.num_ws, w_dim=G.w_dim, in_channels=6, input_size=[48, 64], **TINY).eval()
    inv = Inverter(encoder=enc, generator=G, num_iters=1, residual=True, encoder_size=[48, 64],
                   content_box=[8, 56, 0, 64])
    refiner = Refiner(losses={"mse": (1.0, MSELoss())}, num_steps=1)
    with pytest.raises(ValueError, match="content box"):
        reconstruct(inv, _images(1, 48, 64), target=_images(1, 48, 64), refiner=refiner)
