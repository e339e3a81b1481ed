"""evaluate.py: metrics on known pairs, the demo self-inversion benchmark end to end, resume, determinism, and
clear errors (missing images, checkpoint / generator mismatches) before any work."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from hydra import compose, initialize_config_dir
from PIL import Image

from inversion import encoders as E
from inversion.checkpoints import save_inverter
from inversion.data import ImageIdDataset, SeedDataset, render_seeds
from inversion.encoders.irse import Backbone
from inversion.evaluation import EvalSettings, MetricSuite, evaluate, l2, ms_ssim, psnr
from inversion.evaluation.data import build_dataset, dataset_kind, needs_generator
from inversion.inverter import Inverter
from inversion.losses import LPIPSLoss
from inversion.models import CheckpointError, demo_generator

from helpers import tiny_generator

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
TINY = [16, 16, 32, 32]
ALEX = "weights/alexnet_features_imagenet.pth"
OUTPUTS = ["metrics.json", "per_image.csv", "timing.json", "report.md", "grid.png", "plots/metrics_vs_iteration.png"]
FAST = ["latency.warmup=0", "latency.repeats=1", "progress=false", "report.grid_images=2", "report.thumb_size=32"]


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _export(path: Path, G, gen_cfg: dict, residual: bool = True) -> Path:
    """A tiny untrained encoder + a generator reference, written with save_inverter."""
    cls = E.BackboneEncoder if residual else E.GradualStyleEncoder
    kwargs = dict(num_ws=G.num_ws, w_dim=G.w_dim, input_size=32, channels=TINY)
    torch.manual_seed(0)
    inv = Inverter(encoder=cls(**kwargs).eval(), generator=G, num_iters=2 if residual else 1, residual=residual,
                   encoder_size=32)
    return save_inverter(inv, path, encoder_config={"_target_": f"inversion.encoders.{cls.__name__}", **kwargs},
                         generator_config=gen_cfg)


@pytest.fixture(scope="module")
def restyle_ckpt(tmp_path_factory) -> Path:
    """ReStyle (2 steps) against the embedded 64 px demo generator, as eval_data=demo expects."""
    return _export(tmp_path_factory.mktemp("ckpt") / "restyle_demo.pt", demo_generator(),
                   {"_target_": "inversion.models.demo_generator"})


def _cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="evaluate", overrides=overrides)


# ----------------------------------------------------------------------------- metrics on known pairs
def test_identical_images_give_perfect_scores():
    x = _images(3, 256)
    suite = MetricSuite(networks={"lpips": LPIPSLoss()}, psnr_cap=100.0)  # random LPIPS trunk: d(x, x) is still 0
    values = suite.compute(x, x.clone())
    assert suite.names == ["l2", "psnr", "lpips", "ms_ssim"]
    assert torch.equal(values["l2"], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(values["psnr"], torch.full((3,), 100.0, dtype=torch.float64))  # inf, capped
    torch.testing.assert_close(values["ms_ssim"], torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    assert values["lpips"].abs().max() < 1e-6


def test_known_offset_gives_known_l2_and_psnr():
    x = _images(2, 256).clamp(-0.8, 0.8)
    y = x + 0.1  # [-1, 1] offset 0.1 -> [0, 1] offset 0.05
    torch.testing.assert_close(l2(y, x), torch.full((2,), 0.01), atol=1e-6, rtol=0)
    torch.testing.assert_close(psnr(y, x), torch.full((2,), 26.0206), atol=1e-3, rtol=0)  # 10 log10(1 / 0.05^2)
    assert (ms_ssim(y, x) < 1).all()
    with pytest.raises(ValueError, match="larger than 160 px"):
        ms_ssim(x[..., :64, :64], x[..., :64, :64])


def _faces(shared: Path) -> torch.Tensor:
    files = sorted((shared / "data" / "faces" / "celebahq").glob("*.png"))
    if not files:
        pytest.skip("no CelebA-HQ faces in ../shared/data/faces/celebahq")
    tf = torchvision.transforms.functional
    return torch.stack([tf.to_tensor(Image.open(f).convert("RGB").resize((256, 256), Image.Resampling.BILINEAR))
                        for f in files]) * 2 - 1


def test_metrics_rank_a_blurred_face_closer_than_another_face(shared_dir):
    alex = shared_dir / ALEX
    if not alex.is_file():
        pytest.skip(f"{alex} not found")
    spec = {"_target_": "inversion.losses.LPIPSLoss.from_pretrained", "path": str(alex), "net": "alex"}
    suite = MetricSuite.from_config({"lpips": {"module": spec}, "id_sim": None})
    faces = _faces(shared_dir)
    blurred = torchvision.transforms.functional.gaussian_blur(faces, kernel_size=13, sigma=2.0)
    d_blur, d_other = suite.compute(blurred, faces), suite.compute(faces.roll(1, 0), faces)
    assert (d_blur["lpips"] < d_other["lpips"]).all()
    assert (d_blur["l2"] < d_other["l2"]).all() and (d_blur["psnr"] > d_other["psnr"]).all()
    assert (d_blur["ms_ssim"] > d_other["ms_ssim"]).all()


def test_identity_networks_load_local_weights_and_are_skipped_without(tmp_path):
    """``metrics.id_sim.module`` is a conf/net spec: the identity network's file, or a clear reason it is skipped."""
    x = _images(2, 256)
    irse = Backbone(112, 50, "ir_se", channels=TINY)
    torch.save(irse.state_dict(), tmp_path / "irse.pth")
    cfg = _cfg(["checkpoint=x", f"paths.ir_se50={tmp_path / 'irse.pth'}", f"+metrics.id_sim.module.channels={TINY}"])
    suite = MetricSuite.from_config(cfg.metrics)
    assert "id_sim" in suite.names and not suite.skipped.get("id_sim")
    assert "paths.ir_se50" in suite.descriptions["id_sim"] and "[35, 223, 32, 220]" in suite.descriptions["id_sim"]
    torch.testing.assert_close(suite.compute(x, x)["id_sim"], torch.ones(2, dtype=torch.float64), atol=1e-5, rtol=0)
    # CurricularFace IR-101 as HyperStyle builds it (final BatchNorm1d without affine weights) loads strictly
    curricular = Backbone(112, 100, "ir", affine=False, channels=TINY)
    torch.save(curricular.state_dict(), tmp_path / "curricular.pth")
    cfg = _cfg(["checkpoint=x", "net@metrics.id_sim.module=curricularface",
                f"paths.curricularface={tmp_path / 'curricular.pth'}", f"+metrics.id_sim.module.channels={TINY}"])
    suite = MetricSuite.from_config(cfg.metrics)
    assert suite.compute(x, x)["id_sim"].min() > 0.9999
    skipped = MetricSuite.from_config(_cfg(["checkpoint=x", "net@metrics.id_sim.module=curricularface"]).metrics)
    assert "id_sim" not in skipped.names and "paths.curricularface" in skipped.skipped["id_sim"]
    assert "lpips" not in skipped.names and "paths.lpips_alex" in skipped.skipped["lpips"]
    with pytest.raises(ValueError, match="unknown entries"):
        MetricSuite.from_config({"fid": {"module": {}}})


# ----------------------------------------------------------------------------- typed settings, eval_data specs
@pytest.mark.parametrize("override,message", [
    ("protocol.resize_mode=box", r"protocol.resize_mode='box'; choose one of"),
    ("batch_size=0", r"^batch_size must be >= 1, got 0"),
    ("latency.repeats=often", r"latency.repeats='often': expected an integer"),
    ("+report.grid=4", r"report has unknown keys \['grid'\]"),
    ("noise_mode=fresh", r"noise_mode='fresh'; choose one of"),
    ("+eval_data.kind=seeds", r"eval_data.kind is no longer read"),
    ("eval_data.dataset._target_=null", r"eval_data.dataset=.*expected a Hydra spec with a _target_"),
    ("fast.autocast=fp8", r"fast.autocast='fp8'"),
])
def test_settings_reject_a_bad_value_naming_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        EvalSettings.from_config(_cfg(["checkpoint=x.pt", override]))


def test_settings_are_typed_frozen_and_checked_on_creation():
    s = EvalSettings.from_config(_cfg(["checkpoint=x.pt", "refine=image2stylegan", "refine.num_steps=10",
                                       "refine_eval.steps=[5,0]"]))
    assert s.protocol.size == 256 and s.latency.batch_size == s.batch_size == 8 and s.fast.autocast is None
    assert s.refine is not None and s.refine.steps == (0, 5, 10) and s.refine.seeds == ("encoder", "mean")
    assert s.data.dataset["_target_"] == "inversion.data.SeedDataset" and s.out_dir.name == "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.batch_size = 2  # type: ignore[misc]
    with pytest.raises(ValueError, match="protocol.size must be >= 1"):
        dataclasses.replace(s.protocol, size=0)
    with pytest.raises(ValueError, match="checkpoint=PATH is required"):
        EvalSettings.from_config(_cfg([]))


def test_eval_data_specs_build_their_datasets(tmp_path):
    demo = EvalSettings.from_config(_cfg(["checkpoint=x.pt"])).data
    assert needs_generator(demo.dataset) and dataset_kind(demo.dataset) == "seeds" and demo.root is None
    G = demo_generator()
    seeds = build_dataset(demo.dataset, ["3", "1"], generator=G)
    assert isinstance(seeds, SeedDataset) and [seeds[i]["id"] for i in range(2)] == ["3", "1"]
    assert torch.equal(seeds[1]["image"], render_seeds(G, [1])[0][0])  # rendered alone, as with any other split
    root = tmp_path / "images"
    root.mkdir()
    for i in (0, 1):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(root / f"{i:05d}.png")
    folder = EvalSettings.from_config(_cfg(["checkpoint=x.pt", "eval_data=celebahq_test", f"data_root={root}"])).data
    assert not needs_generator(folder.dataset) and dataset_kind(folder.dataset) == "folder" and folder.root == str(root)
    images = build_dataset(folder.dataset, ["1", "0"])
    assert isinstance(images, ImageIdDataset) and [images[i]["id"] for i in range(2)] == ["1", "0"]
    with pytest.raises(ValueError, match="takes none of"):
        build_dataset({"_target_": "torch.utils.data.TensorDataset"}, ["0"])
    with pytest.raises(ValueError, match="eval_data.dataset._target_='inversion.data.Nope'"):
        build_dataset({"_target_": "inversion.data.Nope"}, ["0"])


# ----------------------------------------------------------------------------- the CLI on the demo split
def test_cli_on_the_demo_split_writes_all_outputs(tmp_path, restyle_ckpt):
    out = tmp_path / "eval"
    args = [f"checkpoint={restyle_ckpt}", "eval_data.split=smoke", f"out_dir={out}", "batch_size=4", *FAST]
    alex = Path(os.environ.get("INVERSION_SHARED", REPO.parent / "shared")) / ALEX  # LPIPS too when present
    if alex.is_file():
        args.append(f"paths.lpips_alex={alex}")
    r = subprocess.run([sys.executable, "evaluate.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["metrics"]["per_iteration"]
    assert [row["iteration"] for row in rows] == [1, 2]  # ReStyle: every metric at every step
    names = ["l2", "psnr", "lpips", "ms_ssim"] if alex.is_file() else ["l2", "psnr", "ms_ssim"]
    assert list(metrics["higher_is_better"]) == names and set(rows[-1]["mean"]) == set(names)
    assert "id_sim" in metrics["skipped"]
    assert metrics["protocol"]["size"] == 256 and metrics["protocol"]["resize_mode"] == "bilinear_antialias"
    assert metrics["data"]["num_images"] == 4 and metrics["checkpoint"]["generator"]["img_resolution"] == 64
    assert "torchmetrics" in metrics["implementations"]["ms_ssim"]
    assert "latency" not in json.dumps(metrics["metrics"])
    with open(out / "per_image.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 * 2 and set(table[0]) == {"id", "iteration", *names}
    timing = json.loads((out / "timing.json").read_text())
    assert timing["latency"]["batch_size"] == 4 and timing["latency"]["ms_per_image_median"] > 0
    report = (out / "report.md").read_text()
    assert "| iteration |" in report and "grid.png" in report and "metrics_vs_iteration.png" in report
    assert "ms/image" in report and "ID skipped" in report
    assert Image.open(out / "grid.png").size[0] == 3 * 32  # input | step 1 | step 2
    assert "L2" in r.stdout and "| 2 |" in r.stdout


# ----------------------------------------------------------------------------- resume and determinism
def test_rerun_resumes_and_metrics_json_is_deterministic(tmp_path, restyle_ckpt, caplog):
    base = [f"checkpoint={restyle_ckpt}", "eval_data.split=smoke", "batch_size=2", "protocol.size=192", *FAST]
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    first = evaluate(_cfg([*base, f"out_dir={run_a}", "limit=2"]))  # "interrupted" after two images
    assert first["run"] == {**first["run"], "computed": 2, "cached": 0}
    with caplog.at_level("INFO", logger="inversion.evaluate"):
        resumed = evaluate(_cfg([*base, f"out_dir={run_a}"]))
    assert resumed["run"]["computed"] == 2 and resumed["run"]["cached"] == 2
    assert "2 cached (skipped), 2 to compute" in caplog.text
    again = evaluate(_cfg([*base, f"out_dir={run_a}"]))
    assert again["run"]["computed"] == 0 and again["run"]["cached"] == 4
    fresh = evaluate(_cfg([*base, f"out_dir={run_b}"]))
    assert fresh["run"]["computed"] == 4
    assert (run_a / "metrics.json").read_bytes() == (run_b / "metrics.json").read_bytes()
    assert (run_a / "per_image.csv").read_bytes() == (run_b / "per_image.csv").read_bytes()
    timing = json.loads((run_a / "timing.json").read_text())
    assert timing["images_cached"] == 4 and timing["images_computed"] == 0
    # a different protocol in the same out_dir is refused rather than mixed with the cached values
    with pytest.raises(ValueError, match="differs in: protocol"):
        evaluate(_cfg([*base, f"out_dir={run_a}", "protocol.quantize=false"]))
    redone = evaluate(_cfg([*base, f"out_dir={run_a}", "protocol.quantize=false", "overwrite=true"]))
    assert redone["run"]["computed"] == 4


# ----------------------------------------------------------------------------- clear errors before any work
def test_checkpoint_resolution_mismatch_is_a_clear_error_before_work(tmp_path):
    gen_cfg = {"_target_": "inversion.models.demo_generator", "img_resolution": 32, "channel_max": 16}
    ckpt = _export(tmp_path / "demo32.pt", demo_generator(img_resolution=32, channel_max=16), gen_cfg)
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match="img_resolution: checkpoint 32, eval_data=demo expects 64"):
        evaluate(_cfg([f"checkpoint={ckpt}", f"out_dir={out}", *FAST]))
    assert not out.exists()


def test_generator_path_override_mismatch_is_a_clear_error(tmp_path):
    def save_rosinality(G, name):
        path = tmp_path / name
        torch.save({"g_ema": {k: v for k, v in G.state_dict().items() if k != "w_avg"}, "latent_avg": G.w_avg}, path)
        return path

    g32, g64 = save_rosinality(tiny_generator(32), "g32.pt"), save_rosinality(tiny_generator(64), "g64.pt")
    ckpt = _export(tmp_path / "ours.pt", tiny_generator(32),
                   {"_target_": "inversion.models.load_generator", "path": str(g32)})
    out = tmp_path / "out"
    common = [f"checkpoint={ckpt}", f"out_dir={out}", "eval_data.expect.img_resolution=null", *FAST]
    with pytest.raises(CheckpointError, match="does not match the one trained with"):
        evaluate(_cfg([*common, f"generator_path={g64}"]))
    official = tmp_path / "psp_official.pt"
    torch.save({"state_dict": {}, "opts": {"encoder_type": "GradualStyleEncoder"}}, official)
    with pytest.raises(CheckpointError, match="drop generator_path"):
        evaluate(_cfg([f"checkpoint={official}", f"out_dir={out}", f"generator_path={g32}", *FAST]))
    assert not out.exists()


def test_missing_images_are_reported_at_once(tmp_path, restyle_ckpt):
    root = tmp_path / "images"
    root.mkdir()
    for i in (0, 2):
        Image.new("RGB", (64, 64), (i, 0, 0)).save(root / f"{i:05d}.png")
    split = tmp_path / "split.txt"
    split.write_text("0\n1\n2\n3\n4\n")
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="3 of 5 image ids not found") as err:
        evaluate(_cfg([f"checkpoint={restyle_ckpt}", "eval_data=celebahq_test", f"data_root={root}",
                       f"eval_data.split={split}", f"out_dir={out}", *FAST]))
    assert all(i in str(err.value) for i in ("1", "3", "4"))
    assert not out.exists()
    with pytest.raises(ValueError, match="pass data_root="):
        evaluate(_cfg([f"checkpoint={restyle_ckpt}", "eval_data=celebahq_test", f"out_dir={out}", *FAST]))


# ----------------------------------------------------------------------------- refinement inside the evaluation
VGG = "weights/vgg16_features_imagenet_fp16.pth"
REFINE = ["refine=image2stylegan", "refine.num_steps=8", "refine.lr=0.05", "refine.loss_size=64",
          "refine_eval.steps=[0,2]", "refine_eval.reach.l2=[1.0,1e-6]"]


def _vgg_or_mse() -> list[str]:
    """The real VGG16 perceptual term when ../shared has its weights; pixel MSE alone otherwise."""
    vgg = Path(os.environ.get("INVERSION_SHARED", REPO.parent / "shared")) / VGG
    return [f"paths.vgg16={vgg}"] if vgg.is_file() else ["refine.losses.perceptual.weight=0"]


def test_refinement_reports_quality_vs_steps_for_both_seeds(tmp_path, restyle_ckpt):
    out = tmp_path / "eval"
    base = [f"checkpoint={restyle_ckpt}", "eval_data.split=smoke", "batch_size=2", *FAST, *REFINE, *_vgg_or_mse()]
    result = evaluate(_cfg([*base, f"out_dir={out}"]))
    refine = result["metrics"]["refine"]
    assert refine["seeds"] == ["encoder", "mean"] and refine["steps"] == [0, 2, 8]  # refine.num_steps is added
    # step 0 of the encoder-seeded run is the encoder's own result, scored the same way
    assert refine["per_step"]["encoder"][0]["mean"] == result["metrics"]["final"]
    with open(out / "per_image_refine.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 * 2 * 3 and set(table[0]) >= {"id", "seed", "step", "l2", "psnr", "ms_ssim"}
    for seed in ("encoder", "mean"):  # refinement lowers L2 on every image, from either start
        rows = {(r["id"], int(r["step"])): float(r["l2"]) for r in table if r["seed"] == seed}
        ids = {image_id for image_id, _ in rows}
        assert len(ids) == 4 and all(rows[(i, 8)] < rows[(i, 0)] for i in ids), (seed, rows)
        assert refine["per_step"][seed][-1]["mean"]["l2"] < refine["per_step"][seed][0]["mean"]["l2"]
    # "steps needed to reach X": L2 <= 1 holds from step 0; 1e-6 is never reached within 8 steps
    easy, hard = refine["reach"][0], refine["reach"][1]
    assert easy["metric"] == "l2" and easy["encoder"]["mean_curve_steps"] == 0 and easy["mean"]["fraction_reached"] == 1
    assert hard["encoder"]["mean_curve_steps"] is None and hard["mean"]["median_image_steps"] is None
    report = (out / "report.md").read_text()
    assert "Refinement: quality vs steps" in report and "Steps needed to reach X" in report
    assert "refine_quality_vs_steps.png" in report and (out / "plots" / "refine_quality_vs_steps.png").is_file()
    assert Image.open(out / "grid.png").size[0] == 5 * 32  # input | 2 ReStyle steps | refined x 2 seeds
    timing = json.loads((out / "timing.json").read_text())
    assert timing["refine"]["encoder"]["ms_per_image_step"] > 0 and timing["refine"]["mean"]["images"] == 4
    assert result["protocol"]["refine"]["config"]["space"] == "w+"
    # resumable and deterministic with refinement too
    again = evaluate(_cfg([*base, f"out_dir={out}"]))
    assert again["run"]["computed"] == 0
    evaluate(_cfg([*base, f"out_dir={tmp_path / 'fresh'}"]))
    assert (out / "metrics.json").read_bytes() == (tmp_path / "fresh" / "metrics.json").read_bytes()
    # another refiner in the same out_dir is refused rather than mixed with the cached values
    with pytest.raises(ValueError, match="differs in: protocol"):
        evaluate(_cfg([*base, f"out_dir={out}", "refine.lr=0.1"]))


def test_pti_reports_quality_vs_tuning_steps(tmp_path, restyle_ckpt):
    """refine=pti in the evaluation: the same study (per-step table, reach table, plot) over tuning steps."""
    out = tmp_path / "pti"
    with pytest.warns(UserWarning, match="paths.lpips_alex"):  # no LPIPS weights here: MSE only, no early stop
        result = evaluate(_cfg([f"checkpoint={restyle_ckpt}", "eval_data.split=smoke", "batch_size=2", *FAST,
                                "refine=pti", "refine.num_steps=6", "refine.lr=0.003", "refine_eval.steps=[0,3]",
                                f"out_dir={out}"]))
    refine = result["metrics"]["refine"]
    assert refine["steps"] == [0, 3, 6] and refine["per_step"]["encoder"][0]["mean"] == result["metrics"]["final"]
    with open(out / "per_image_refine.csv") as f:
        table = list(csv.DictReader(f))
    for seed in ("encoder", "mean"):  # tuning lowers L2 on every image, around either pivot
        rows = {(r["id"], int(r["step"])): float(r["l2"]) for r in table if r["seed"] == seed}
        assert all(rows[(i, 6)] < rows[(i, 0)] for i, _ in rows), (seed, rows)
    assert result["protocol"]["refine"]["config"]["_target_"] == "inversion.refine.Tuner"
    report = (out / "report.md").read_text()
    assert "Refinement: quality vs steps" in report and (out / "plots" / "refine_quality_vs_steps.png").is_file()


def test_refinement_config_errors_before_work(tmp_path, restyle_ckpt):
    base = [f"checkpoint={restyle_ckpt}", "refine=projector", f"out_dir={tmp_path / 'o'}", *FAST]
    with pytest.raises(ValueError, match="refine_eval.seeds"):
        evaluate(_cfg([*base, "refine_eval.seeds=[encoder,random]"]))
    with pytest.raises(ValueError, match="outside"):
        evaluate(_cfg([*base, "refine.num_steps=10", "refine_eval.steps=[0,20]"]))
    assert not (tmp_path / "o").exists()


def test_folder_split_of_real_faces_with_a_psp_checkpoint(tmp_path, shared_dir):
    faces = shared_dir / "data" / "faces" / "celebahq"
    if not faces.is_dir():
        pytest.skip(f"{faces} not found")
    ckpt = _export(tmp_path / "psp.pt", demo_generator(), {"_target_": "inversion.models.demo_generator"},
                   residual=False)
    split = tmp_path / "faces.txt"
    split.write_text("# three CelebA-HQ ids\n234\n258\n265\n")  # resolved to 00234.png ...
    out = tmp_path / "out"
    result = evaluate(_cfg([f"checkpoint={ckpt}", "eval_data=celebahq_test", f"data_root={faces}",
                            f"eval_data.split={split}", "eval_data.expect.img_resolution=64",
                            "eval_data.num_workers=0", f"out_dir={out}", "protocol.size=192", *FAST]))
    assert [r["iteration"] for r in result["metrics"]["per_iteration"]] == [1]
    assert result["data"]["root"] == str(faces) and result["protocol"]["input_resize_mode"] == "bilinear_antialias"
    assert all((out / name).is_file() for name in OUTPUTS)


@pytest.mark.slow
def test_encoder_seeded_refinement_reaches_a_threshold_sooner_on_the_demo(tmp_path, demo_export):
    """The trained demo encoder (the session's `python train.py` run) against w_avg as the refinement's start,
    with the same refiner (W+, pixel MSE, Adam 0.01, 30 steps): the encoder's result is the first point of its
    curve, and the mean L2 reaches 0.03 in fewer steps (measured on CPU: encoder 5, w_avg 30 steps)."""
    result = evaluate(_cfg([f"checkpoint={demo_export}", "eval_data.split=smoke", "batch_size=4", *FAST,
                            f"out_dir={tmp_path}", "refine=image2stylegan", "refine.num_steps=30",
                            "refine.losses.perceptual.weight=0", "refine.loss_size=64", "refine_eval.reach.l2=[0.03]",
                            "refine_eval.reach.psnr=[]", "refine_eval.reach.lpips=[]"]))
    refine = result["metrics"]["refine"]
    encoder, mean = refine["per_step"]["encoder"], refine["per_step"]["mean"]
    assert encoder[0]["mean"] == result["metrics"]["final"]  # starts from the encoder's error, not from scratch
    assert encoder[0]["mean"]["l2"] < 0.5 * mean[0]["mean"]["l2"]
    row = refine["reach"][0]
    assert row["metric"] == "l2" and row["threshold"] == 0.03
    steps_enc, steps_mean = row["encoder"]["mean_curve_steps"], row["mean"]["mean_curve_steps"]
    assert steps_enc is not None and (steps_mean is None or steps_enc < steps_mean), row


def test_fast_path_is_recorded_and_close_to_fp32(tmp_path, restyle_ckpt):
    base = [f"checkpoint={restyle_ckpt}", "eval_data.split=smoke", "batch_size=4", *FAST]
    plain = evaluate(_cfg([*base, f"out_dir={tmp_path / 'fp32'}"]))
    fast = evaluate(_cfg([*base, f"out_dir={tmp_path / 'bf16'}", "fast.autocast=bfloat16", "fast.channels_last=true"]))
    assert fast["protocol"]["fast_path"] == {"autocast": "bfloat16", "channels_last": True, "compile": None}
    assert plain["protocol"]["fast_path"] == {"autocast": None, "channels_last": False, "compile": None}
    a, b = plain["metrics"]["final"], fast["metrics"]["final"]
    assert abs(a["l2"] - b["l2"]) < 0.02 * a["l2"] and abs(a["psnr"] - b["psnr"]) < 0.2
    assert "autocast bfloat16" in json.loads((tmp_path / "bf16" / "timing.json").read_text())["dtype"]
