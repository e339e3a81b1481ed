"""One spec per loss network: the same conf/net entry builds the training term, the refinement term and the
evaluation metric, and a missing weights file is reported under its ``paths.*`` key by each consumer."""

from __future__ import annotations

import pytest
import torch
import torchvision

from inversion.config import compose
from inversion.encoders import Backbone
from inversion.evaluation import MetricSuite
from inversion.losses import MissingWeightsError, build_terms
from inversion.refine import build_refiner

TINY = [16, 16, 32, 32]


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """A random torchvision AlexNet ``features.*`` file (LPIPS trunk) and a small IR-SE50 (ID network)."""
    root = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    alex = root / "alexnet_features.pth"
    torch.save({f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()}, alex)
    irse = root / "model_ir_se50_tiny.pth"
    torch.save(Backbone(112, 50, "ir_se", channels=TINY).state_dict(), irse)
    return {"lpips_alex": alex, "ir_se50": irse}


def _consumers(paths: list[str], term: str, net: str, extra: list[str] = ()):
    """The (training, refinement, evaluation) configs all using conf/net/<net> for ``term``."""
    other = "id" if term == "lpips" else "lpips"  # pSp's other network term is left out (weight 0)
    train = compose("train", ["experiment=psp_ffhq", f"net@loss.{term}.module={net}", *paths, f"loss.{other}.weight=0",
                              *[f"+loss.{term}.module.{e}" for e in extra]])
    add = "" if term == "id" else "+"  # image2stylegan has an id term (weight 0), no lpips term
    refine = compose("invert", ["refine=image2stylegan", f"{add}net@refine.losses.{term}.module={net}", *paths,
                                f"++refine.losses.{term}.weight=0.5",
                                *[f"+refine.losses.{term}.module.{e}" for e in extra]])
    metric = "id_sim" if term == "id" else term
    evaluate = compose("evaluate", ["checkpoint=x", f"net@metrics.{metric}.module={net}", *paths,
                                    *[f"+metrics.{metric}.module.{e}" for e in extra]])
    return train, refine, evaluate, metric


@pytest.mark.parametrize("term, net, extra", [("lpips", "lpips_alex", []), ("id", "ir_se50", [f"channels={TINY}"])])
def test_one_spec_builds_the_training_term_the_refinement_term_and_the_metric(weight_files, term, net, extra):
    key = "lpips_alex" if term == "lpips" else "ir_se50"
    paths = [f"paths.{key}={weight_files[key]}"]  # only this network's file: the others are skipped / left out
    train, refine, evaluate, metric = _consumers(paths, term, net, extra)
    spec = train.loss[term].module
    assert spec == refine.refine.losses[term].module == evaluate.metrics[metric].module  # one spec, three readers

    training = build_terms(train.loss)[term].module
    refining = build_refiner(refine.refine).loss_modules[term]
    scoring = MetricSuite.from_config(evaluate.metrics).networks[metric]
    assert type(training) is type(refining) is type(scoring)
    for a, b in [(training, refining), (training, scoring)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)  # the same file, loaded alike
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(training(x, y), refining(x, y))


def test_a_missing_weights_file_names_its_paths_key_in_every_consumer():
    train, refine, evaluate, _ = _consumers([], "lpips", "lpips_alex")
    with pytest.raises(MissingWeightsError, match="paths.lpips_alex"):  # training: an error before anything runs
        build_terms(train.loss)
    with pytest.warns(UserWarning, match="paths.lpips_alex"):  # refinement: the term is skipped, with a warning
        assert "lpips" not in build_refiner(refine.refine).loss_modules
    suite = MetricSuite.from_config(evaluate.metrics)  # evaluation: skipped, the reason goes into metrics.json
    assert "lpips" not in suite.names and "paths.lpips_alex" in suite.skipped["lpips"]


def test_a_crop_term_is_a_training_option_checked_when_built():
    """pSp's lpips_crop / l2_crop: ``crop: [top, bottom, left, right]``; a bad box or a crop in refinement is an
    error naming the term."""
    mse = {"_target_": "inversion.losses.MSELoss"}
    terms = build_terms({"l2_crop": {"weight": 0.01, "module": mse, "crop": [35, 223, 32, 220]}})
    assert terms["l2_crop"].crop == (35, 223, 32, 220)
    for bad in ([35, 35, 32, 220], [1, 2, 3], [-1, 5, 0, 5]):
        with pytest.raises(ValueError, match="crop must be"):
            build_terms({"l2_crop": {"weight": 1.0, "module": mse, "crop": bad}})
    with pytest.raises(ValueError, match="crop must be"):
        build_terms({"w": {"weight": 1.0, "module": {"_target_": "inversion.losses.WNormLoss"}, "inputs": "ws_avg",
                           "crop": [0, 1, 0, 1]}})
    with pytest.raises(ValueError, match="'l2_crop': crop is a training option"):
        build_refiner({"_target_": "inversion.refine.Refiner", "losses": {
            "l2_crop": {"weight": 1.0, "module": mse, "crop": [0, 8, 0, 8]}}})
