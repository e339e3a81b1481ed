"""Per-image reconstruction metrics on image batches: L2, PSNR, LPIPS, MS-SSIM, identity and MoCo similarity.

Every metric takes two batches ``pred``, ``target`` [N, 3, H, W] in [-1, 1] (already at the protocol size) and
returns one value per image, [N]. Maintained implementations do the work where they exist:

* PSNR and MS-SSIM: ``torchmetrics.functional.image`` on images mapped to [0, 1] (``data_range=1``);
* LPIPS: the ``lpips`` package (v0.1 linear layers from its wheel, AlexNet trunk from a local file) through
  :class:`inversion.losses.LPIPSLoss`;
* identity: :mod:`inversion.losses.identity` networks (ArcFace IR-SE50, CurricularFace-compatible IR-101,
  facenet-pytorch's InceptionResnetV1), each from a local weight file;
* MoCo similarity (non-face domains: cars, churches, horses, animals): cosine similarity of the MoCo-v2 ResNet-50
  features the pSp / e4e / ReStyle ``MocoLoss`` compares (:class:`inversion.losses.FeatureSimilarityLoss`); opt-in
  (``+net@metrics.moco_sim.module=moco paths.moco=...``);
* the networks are declared as the training and refinement terms are (``conf/net`` specs, built by
  :func:`inversion.losses.build_network`), and every column is an entry of :data:`METRICS`;
* L2 is ``mean((pred - target)^2)`` over C, H, W on [-1, 1] images: the "L2" / "MSE" column of pSp, e4e,
  ReStyle and HyperStyle (``torch.nn.MSELoss`` on ``Normalize(0.5, 0.5)`` tensors).

Nothing is downloaded: a metric whose weights are not configured is skipped, with the reason recorded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from torch import nn
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure, peak_signal_noise_ratio

from ..config import to_plain
from ..losses import FeatureSimilarityLoss, LPIPSLoss, MissingWeightsError, build_network, weights_key

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "METRIC_LABELS",
    "Metric",
    "MS_SSIM_BETAS",
    "MetricSuite",
    "package_version",
    "l2",
    "ms_ssim",
    "psnr",
    "to_unit_range",
]

#: Wang et al. 2003 scale weights (torchmetrics' default), as in the pSp-family ``criteria/ms_ssim.py``.
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover - installed with the project
        return "unknown"


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> [0, 1] (clamped)."""
    return ((x.clamp(-1, 1) + 1) / 2).float()


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"expected two image batches [N, C, H, W] of equal shape, got {list(pred.shape)}, "
                         f"{list(target.shape)}")


def l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error on [-1, 1] images, [N] (the papers' "L2")."""
    _check_pair(pred, target)
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


def psnr(pred: torch.Tensor, target: torch.Tensor, cap: float = 100.0) -> torch.Tensor:
    """Per-image PSNR in dB on [0, 1] images (torchmetrics), capped at ``cap`` (identical images give ``cap``)."""
    _check_pair(pred, target)
    values = peak_signal_noise_ratio(to_unit_range(pred), to_unit_range(target), data_range=1.0,
                                     reduction="none", dim=(1, 2, 3))
    return values.clamp(max=cap)


def ms_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image MS-SSIM on [0, 1] images (torchmetrics: 11x11 Gaussian, sigma 1.5, 5 scales, relu-normalised)."""
    _check_pair(pred, target)
    min_side = 10 * 2 ** (len(MS_SSIM_BETAS) - 1)
    if min(pred.shape[-2:]) <= min_side:
        raise ValueError(f"MS-SSIM with {len(MS_SSIM_BETAS)} scales needs images larger than {min_side} px, got "
                         f"{tuple(pred.shape[-2:])}; use protocol.size=256")
    return multiscale_structural_similarity_index_measure(
        to_unit_range(pred), to_unit_range(target), data_range=1.0, kernel_size=11, sigma=1.5,
        betas=MS_SSIM_BETAS, normalize="relu", reduction="none",
    )


@dataclass(frozen=True)
class Metric:
    """One column of the evaluation tables: how it is computed and how it is shown."""

    name: str  # Column name (metrics.json, per_image.csv).
    label: str  # Label in tables and plots.
    higher_is_better: bool  # The arrow in the report; "reach" thresholds compare with >= or <=.
    fn: Callable[..., torch.Tensor]  # (pred, target, net, suite) -> [N]; `net` is the built network or None.
    network: bool = False  # Needs a network built from ``metrics.<name>.module`` (a conf/net spec).
    opt_in: bool = False  # Runs only when ``metrics.<name>`` is given; absent, it is not run and not listed as skipped.


def _describe_ms_ssim() -> str:
    return (f"torchmetrics {package_version('torchmetrics')} multiscale_structural_similarity_index_measure, [0, 1] "
            f"images, data_range=1, 11x11 Gaussian sigma 1.5, k1=0.01, k2=0.03, betas {list(MS_SSIM_BETAS)}, "
            "normalize='relu'")


#: The metric registry, in table order (as NVlabs' metric_main): add an entry to add a column.
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("l2", "L2", False, lambda p, t, net, suite: l2(p, t)),
    Metric("psnr", "PSNR", True, lambda p, t, net, suite: psnr(p, t, suite.psnr_cap)),
    Metric("lpips", "LPIPS", False, lambda p, t, net, suite: net(p, t, per_sample=True), network=True),
    Metric("ms_ssim", "MS-SSIM", True, lambda p, t, net, suite: ms_ssim(p, t)),
    Metric("id_sim", "ID", True, lambda p, t, net, suite: net.similarity(p, t), network=True),
    Metric("moco_sim", "MoCo sim", True, lambda p, t, net, suite: net.similarity(p, t), network=True, opt_in=True),
)}
#: Column name -> whether a larger value is better (for the report's arrows).
HIGHER_IS_BETTER: dict[str, bool] = {k: m.higher_is_better for k, m in METRICS.items()}
#: Column name -> label used in tables and plots.
METRIC_LABELS: dict[str, str] = {k: m.label for k, m in METRICS.items()}


def _describe_network(net: nn.Module, spec: Mapping[str, Any]) -> str:
    """What a network-backed metric ran: the class, its weights file and key, and the pre-processing."""
    key = weights_key(spec)
    path = to_plain(spec).get("path")
    if isinstance(net, LPIPSLoss):
        return (f"lpips {package_version('lpips')} LPIPS(net='{net.net_type}', version='0.1'): trunk from {key} "
                f"({path}), linear layers from the lpips wheel; [-1, 1] images")
    if isinstance(net, FeatureSimilarityLoss):
        crop = "the whole image" if net.crop is None else f"crop [top, bottom, left, right] = {list(net.crop)}"
        norm = "ImageNet-normalised" if net.imagenet_normalize else "[-1, 1] values as is (no ImageNet normalisation)"
        return (f"cosine similarity of torchvision {net.arch} pooled features without fc (FeatureSimilarityLoss, "
                f"weights {key}: {path}); {crop} at the protocol size, F.interpolate to {net.size}x{net.size} "
                f"('{net.interpolation}'), {norm}")
    crop = getattr(net, "crop", None)
    crop_txt = "no crop" if crop is None else f"crop [top, bottom, left, right] = {list(crop)} at 256 px"
    return (f"cosine similarity of {type(net).__name__} embeddings (weights {key}: {path}); {crop_txt}, then "
            "adaptive average pooling to the network input")


@dataclass
class MetricSuite:
    """The metrics of one evaluation: the networks of those that run, which were skipped (and why), and how each
    is computed."""

    networks: dict[str, nn.Module] = field(default_factory=dict)  # name -> network of a network-backed metric
    psnr_cap: float = 100.0
    skipped: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls,
        cfg: Mapping[str, Any],  # ``metrics``: {lpips: {module: <conf/net spec>}, id_sim: {module: ...}}; null: off
        *,
        psnr_cap: float = 100.0,
        device: torch.device | str = "cpu",
    ) -> MetricSuite:
        """Build the configured networks (:func:`inversion.losses.build_network`, the spec training and refinement
        read); a metric whose weights file is not configured is skipped with the reason."""
        suite = cls(psnr_cap=float(psnr_cap))
        suite.descriptions.update(
            l2="mean((x - y)^2) over C, H, W on [-1, 1] images (torch)",
            psnr=f"torchmetrics {package_version('torchmetrics')} peak_signal_noise_ratio, data_range=1 on [0, 1] "
                 f"images, per image, capped at {psnr_cap:g} dB",
            ms_ssim=_describe_ms_ssim(),
        )
        unknown = set(cfg or {}) - {k for k, m in METRICS.items() if m.network}
        if unknown:
            raise ValueError(f"metrics: unknown entries {sorted(unknown)}; network-backed metrics are "
                             f"{[k for k, m in METRICS.items() if m.network]}")
        for name, metric in METRICS.items():
            if not metric.network:
                continue
            spec = (cfg or {}).get(name)
            if metric.opt_in and name not in (cfg or {}):
                continue
            if spec is None or spec.get("module") is None:
                suite.skipped[name] = f"metrics.{name} is null (turned off)"
                continue
            try:
                net = build_network(spec["module"])
            except MissingWeightsError as err:
                suite.skipped[name] = str(err)
                continue
            suite.networks[name] = net.to(device).eval()
            suite.descriptions[name] = _describe_network(net, spec["module"])
        return suite

    @property
    def names(self) -> list[str]:
        """Column names of the metrics that run, in table order."""
        return [k for k, m in METRICS.items() if not m.network or k in self.networks]

    def modules(self) -> list[nn.Module]:
        """The networks held (for moving / counting)."""
        return list(self.networks.values())

    @torch.no_grad()
    def compute(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every metric that runs, name -> per-image values [N] (float64 on CPU)."""
        _check_pair(pred, target)
        pred, target = pred.float(), target.float()
        return {k: METRICS[k].fn(pred, target, self.networks.get(k), self).detach().double().cpu() for k in self.names}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation, summed with ``math.fsum`` (independent of the order)."""
    m = math.fsum(values) / len(values)
    return m, math.sqrt(math.fsum((v - m) ** 2 for v in values) / len(values))


def summarize_curves(
    curves: Sequence[Sequence[Mapping[str, float]]],  # one curve per image: per position, metric -> value
    names: Sequence[str],  # metrics to summarize
    round_fn: Callable[[float], float] = lambda v: v,
) -> list[dict[str, dict[str, float]]]:
    """``[{"mean": {name: ...}, "std": {name: ...}}]`` over the images at every position of their curves (ReStyle
    iterations, refinement steps); curves of different lengths (a stale cache) are a ``ValueError``."""
    lengths = {len(c) for c in curves}
    if len(lengths) != 1:
        raise ValueError(f"cached records have different numbers of steps {sorted(lengths)}; use overwrite=true")
    rows = []
    for k in range(lengths.pop()):
        stats = {name: mean_std([float(c[k][name]) for c in curves]) for name in names}
        rows.append({"mean": {n: round_fn(m) for n, (m, _) in stats.items()},
                     "std": {n: round_fn(sd) for n, (_, sd) in stats.items()}})
    return rows
