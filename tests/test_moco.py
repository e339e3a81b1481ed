"""The MoCo-v2 similarity network (conf/net/moco): the official file layout loads, the loss and the logged
``id_improve`` equal an oracle written from pSp / e4e / ReStyle's ``criteria/moco_loss.py``, a missing file is a
clear error, and the ``moco_sim`` metric is registered, opt-in and computed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from inversion.config import compose
from inversion.evaluation import METRICS, MetricSuite
from inversion.losses import EmbeddingSimilarityLoss, FeatureSimilarityLoss, MissingWeightsError, build_terms


@pytest.fixture(scope="module")
def moco_file(tmp_path_factory):
    """A random ResNet-50 saved as facebookresearch/moco saves ``moco_v2_800ep_pretrain.pth.tar``: ``{'epoch',
    'arch', 'state_dict': {'module.encoder_q.*' (with the 2-layer MLP head fc.0 / fc.2), 'module.encoder_k.*',
    'module.queue', 'module.queue_ptr'}, 'optimizer'}``; BatchNorm running statistics randomised so that loading
    them matters."""
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    net.fc = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 128))  # MoCo-v2's projection head
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    state = {f"module.encoder_q.{k}": v for k, v in net.state_dict().items()}
    state.update({f"module.encoder_k.{k}": v.clone() for k, v in net.state_dict().items()})
    state.update({"module.queue": F.normalize(torch.randn(128, 64), dim=0), "module.queue_ptr": torch.zeros(1).long()})
    head = nn.Linear(4, 2)  # an SGD state of the file's form (momentum buffers, param groups)
    opt = torch.optim.SGD(head.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    head(torch.randn(3, 4)).sum().backward()
    opt.step()
    path = tmp_path_factory.mktemp("moco") / "moco_v2_800ep_pretrain.pth.tar"
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": opt.state_dict()}, path)
    return path


def train_cfg(*overrides: str):
    """pSp's training config with the LPIPS term off (its trunk file is not needed here)."""
    return compose("train", ["experiment=psp_ffhq", "loss.lpips.weight=0", *overrides])


def official_moco(path) -> nn.Module:
    """The official ``MocoLoss.__load_model``: torchvision resnet50, keys ``module.encoder_q.*`` except ``fc``
    renamed, every other key dropped, loaded non-strictly with only ``fc`` missing, the fc layer cut off."""
    model = torchvision.models.resnet50()
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    kept = {k[len("module.encoder_q."):]: v for k, v in state.items()
            if k.startswith("module.encoder_q") and not k.startswith("module.encoder_q.fc")}
    msg = model.load_state_dict(kept, strict=False)
    assert set(msg.missing_keys) == {"fc.weight", "fc.bias"} and not msg.unexpected_keys
    model.requires_grad_(False)  # the official freezes every layer but fc, which is then cut off
    return nn.Sequential(*list(model.children())[:-1]).eval()


def official_forward(model: nn.Module, y_hat, y, x):
    """The official ``MocoLoss.forward``: ``(sum_i (1 - <f(y_hat_i), f(y_i)>) / n, mean_i (<f(y_hat_i), f(y_i)> -
    <f(y_i), f(x_i)>))`` with ``f`` = nearest resize to 224, the network, l2 normalisation, squeeze."""
    def feats(t):
        return F.normalize(model(F.interpolate(t, size=224)), dim=1).squeeze()

    fx, fy, fyh = feats(x), feats(y).detach(), feats(y_hat)
    loss, improvement = 0, 0.0
    for i in range(x.shape[0]):
        target, views = fyh[i].dot(fy[i]), fy[i].dot(fx[i])
        loss = loss + 1 - target
        improvement += target.item() - views.item()  # the official float(diff_target) - float(diff_views)
    return loss / x.shape[0], improvement / x.shape[0]


def test_official_layout_loads_and_the_loss_equals_the_official_computation(moco_file):
    net = build_terms(train_cfg(f"paths.moco={moco_file}", "net@loss.id.module=moco").loss)["id"].module
    assert isinstance(net, FeatureSimilarityLoss) and isinstance(net, EmbeddingSimilarityLoss)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    oracle = official_moco(moco_file)
    for ours_t, ref_t in zip(net.model.state_dict().values(), oracle.state_dict().values(), strict=True):
        assert torch.equal(ours_t, ref_t)  # the same tensors, in the same order (fc aside)

    # float64: random ResNets map all images to nearly parallel features (loss ~1e-4), so compare to ~1e-12
    net, oracle = net.double(), oracle.double()
    torch.manual_seed(1)
    y = torch.rand(2, 3, 96, 128, dtype=torch.float64) * 2 - 1  # cars' 192 x 256 at half size: squashed to 224 x 224
    y_hat = (0.6 * y + 0.4 * (torch.rand_like(y) * 2 - 1)).requires_grad_(True)
    ref_in = y_hat.detach().clone().requires_grad_(True)
    ours = net(y_hat, y)
    ref, ref_improve = official_forward(oracle, ref_in, y, y)  # the coaches pass x = y to an encoder's loss
    assert ref.item() > 1e-6  # not trivially zero
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(y_hat.grad, ref_in.grad, rtol=1e-7, atol=1e-14)  # y detached: gradients reach y_hat
    # our training module logs id_improve = -loss (x = y), the official coach's loss_dict['id_improve']
    torch.testing.assert_close(torch.tensor(ref_improve, dtype=torch.float64), -ours.detach(), rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        per_sample = net(y_hat, y, per_sample=True)
        torch.testing.assert_close(per_sample.mean(), ours.detach())
        torch.testing.assert_close(net.similarity(y_hat, y), 1 - per_sample, rtol=0, atol=1e-12)
        torch.testing.assert_close(net.embed(y).norm(dim=1), torch.ones(2, dtype=torch.float64))


def test_a_missing_moco_file_is_a_clear_error(tmp_path):
    with pytest.raises(MissingWeightsError, match="paths.moco"):  # not configured: names the config key
        build_terms(train_cfg("net@loss.id.module=moco").loss)
    missing = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    with pytest.raises(FileNotFoundError) as err:  # configured but absent: names the file and where to get it
        build_terms(train_cfg(f"paths.moco={missing}", "net@loss.id.module=moco").loss)
    text = str(err.value)
    assert str(missing) in text and "dl.fbaipublicfiles.com/moco" in text and "paths.moco" in text
    bad = tmp_path / "not_moco.pt"
    torch.save({"state_dict": {"module.encoder_q.conv1.weight": torch.zeros(1)}}, bad)
    with pytest.raises(RuntimeError, match="moco_v2_800ep_pretrain"):
        FeatureSimilarityLoss.from_pretrained(bad)


def test_random_moco_reads_no_file():
    cfg = train_cfg("net@loss.id.module=random_moco")
    assert "path" not in cfg.loss.id.module
    assert isinstance(build_terms(cfg.loss)["id"].module, FeatureSimilarityLoss)


def test_moco_sim_metric_is_registered_opt_in_and_scores_similarity(moco_file):
    metric = METRICS["moco_sim"]
    assert metric.network and metric.higher_is_better and metric.opt_in
    default = MetricSuite.from_config(compose("evaluate", ["checkpoint=x"]).metrics)
    assert "moco_sim" not in default.names and "moco_sim" not in default.skipped  # face evaluations unchanged

    on = ["checkpoint=x", "+net@metrics.moco_sim.module=moco", "metrics.id_sim=null"]
    skipped = MetricSuite.from_config(compose("evaluate", on).metrics)
    assert "moco_sim" not in skipped.names and "paths.moco" in skipped.skipped["moco_sim"]
    assert "turned off" in MetricSuite.from_config({"moco_sim": None}).skipped["moco_sim"]

    suite = MetricSuite.from_config(compose("evaluate", [*on, f"paths.moco={moco_file}"]).metrics)
    assert suite.names[-1] == "moco_sim" and "id_sim" not in suite.names
    text = suite.descriptions["moco_sim"]
    assert "paths.moco" in text and "224x224" in text and "'nearest'" in text
    torch.manual_seed(2)
    x = torch.rand(2, 3, 256, 256) * 2 - 1  # at the protocol size (MS-SSIM needs > 160 px)
    other = F.interpolate(torch.rand(2, 3, 4, 4) * 2 - 1, size=256, mode="bilinear")  # smooth: farther from x
    same, diff = suite.compute(x, x)["moco_sim"], suite.compute(other, x)["moco_sim"]
    assert same.dtype == torch.float64 and same.shape == (2,)
    torch.testing.assert_close(same, torch.ones(2, dtype=torch.float64), atol=1e-5, rtol=0)
    oracle = official_moco(moco_file)
    with torch.no_grad():
        ref = 1 - official_forward(oracle, other, x, x)[0]  # batch-mean official similarity
    torch.testing.assert_close(diff.mean(), ref.double(), atol=1e-5, rtol=0)
    assert (diff < same).all()
