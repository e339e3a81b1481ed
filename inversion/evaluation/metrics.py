"""Per-image reconstruction metrics on image batches: L2, PSNR, LPIPS, MS-SSIM and identity similarity.

Every metric takes two batches ``pred``, ``target`` [N, 3, H, W] in [-1, 1] (already at the protocol size) and
returns one value per image, [N]. Maintained implementations do the work where they exist:

* PSNR and MS-SSIM: ``torchmetrics.functional.image`` on images mapped to [0, 1] (``data_range=1``);
* LPIPS: the ``lpips`` package (v0.1 linear layers from its wheel, AlexNet trunk from a local file) through
  :class:`inversion.losses.LPIPSLoss`;
* identity: :mod:`inversion.losses.identity` networks (ArcFace IR-SE50, CurricularFace-compatible IR-101,
  facenet-pytorch's InceptionResnetV1), each from a local weight file;
* L2 is ``mean((pred - target)^2)`` over C, H, W on [-1, 1] images: the "L2" / "MSE" column of pSp, e4e,
  ReStyle and HyperStyle (``torch.nn.MSELoss`` on ``Normalize(0.5, 0.5)`` tensors).

Nothing is downloaded: a metric whose weights are not configured is skipped, with the reason recorded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from torch import nn
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure, peak_signal_noise_ratio

from ..encoders.irse import IRSE_CHANNELS, Backbone, read_state_dict
from ..losses import PSP_FACE_CROP, FaceNetIDLoss, IDLoss, LPIPSLoss
from ..losses.identity import EmbeddingSimilarityLoss
from ..models.state import load_state_strict

__all__ = [
    "HIGHER_IS_BETTER",
    "ID_NETS",
    "METRIC_LABELS",
    "MS_SSIM_BETAS",
    "MetricSuite",
    "package_version",
    "build_id_net",
    "l2",
    "ms_ssim",
    "psnr",
    "to_unit_range",
]

#: Column name -> whether a larger value is better (for the report's arrows).
HIGHER_IS_BETTER: dict[str, bool] = {"l2": False, "psnr": True, "lpips": False, "ms_ssim": True, "id_sim": True}
#: Column name -> label used in tables and plots.
METRIC_LABELS: dict[str, str] = {"l2": "L2", "psnr": "PSNR", "lpips": "LPIPS", "ms_ssim": "MS-SSIM", "id_sim": "ID"}
#: Wang et al. 2003 scale weights (torchmetrics' default), as in the pSp-family ``criteria/ms_ssim.py``.
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Supported identity networks (``metrics.id_net``).
ID_NETS = ("irse50", "curricularface", "facenet")

CURRICULARFACE_HINT = (
    "It should be a CurricularFace IR-101 state dict in the TreB1eN/pSp Backbone layout (e.g. HyperStyle's "
    "'CurricularFace_Backbone.pth', loaded there by models/encoders/model_irse.IR_101); pass its local path."
)


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


def _curricularface(path: str | os.PathLike, crop: Sequence[int] | None, **kwargs: Any) -> IDLoss:
    """An :class:`IDLoss` whose network is an IR-101 (``mode='ir'``) as CurricularFace / HyperStyle's ``IR_101``.

    HyperStyle builds ``Backbone(112, 100, 'ir', drop_ratio=0.4, affine=False)``; the final BatchNorm1d is made
    affine only when the file holds its weight, so both variants load strictly.
    """
    channels = kwargs.pop("channels", IRSE_CHANNELS)
    num_layers = kwargs.pop("num_layers", 100)
    mode = kwargs.pop("mode", "ir")
    net = IDLoss(crop=crop, num_layers=num_layers, mode=mode, channels=channels, **kwargs)
    state = read_state_dict(path, "CurricularFace IR-101", CURRICULARFACE_HINT)
    affine = "output_layer.4.weight" in state
    net.facenet = Backbone(net.pool_size, num_layers, mode, drop_ratio=0.4, affine=affine, channels=channels)
    load_state_strict(net.facenet, state, str(path), what="CurricularFace IR-101 weights", hint=CURRICULARFACE_HINT,
                      error=RuntimeError)
    net.freeze()
    return net


def build_id_net(
    name: str,  # One of ID_NETS.
    path: str | os.PathLike,  # Local weight file.
    crop: Sequence[int] | None = PSP_FACE_CROP,  # Face box on the 256 px images, (top, bottom, left, right).
    **kwargs: Any,  # Extra constructor arguments (e.g. ``channels`` for small test networks).
) -> EmbeddingSimilarityLoss:
    """A frozen identity network with ``.similarity(x, y) -> [N]`` from a local weight file."""
    if name == "irse50":
        return IDLoss.from_pretrained(path, crop=crop, **kwargs)
    if name == "curricularface":
        return _curricularface(path, crop, **kwargs)
    if name == "facenet":
        return FaceNetIDLoss.from_pretrained(path, crop=crop, resize_to=256, **kwargs)
    raise ValueError(f"unknown metrics.id_net {name!r}; choose one of {list(ID_NETS)}")


_ID_DESCRIPTIONS = {
    "irse50": "ArcFace IR-SE50 (TreB1eN model_ir_se50.pth, pSp's ID loss network), 112 px input",
    "curricularface": "CurricularFace IR-101 (HyperStyle's evaluation network), 112 px input",
    "facenet": "facenet-pytorch InceptionResnetV1 (VGGFace2), 160 px input",
}
_ID_FILES = {"irse50": "ArcFace IR-SE50 (model_ir_se50.pth)",
             "curricularface": "CurricularFace IR-101 (CurricularFace_Backbone.pth)",
             "facenet": "facenet-pytorch VGGFace2 (20180402-114759-vggface2.pt)"}


@dataclass
class MetricSuite:
    """The metrics of one evaluation: which run, which were skipped (and why), and how each is computed."""

    lpips: LPIPSLoss | None = None
    id_net: EmbeddingSimilarityLoss | None = None
    psnr_cap: float = 100.0
    skipped: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls,
        cfg: Mapping[str, Any],  # The ``metrics`` config: lpips_backbone, lpips_net, id_net, id_weights, ...
        *,
        id_crop: Sequence[int] | None = PSP_FACE_CROP,
        psnr_cap: float = 100.0,
        device: torch.device | str = "cpu",
    ) -> MetricSuite:
        """Load the configured networks from local files; unconfigured ones are skipped with a reason."""
        suite = cls(psnr_cap=float(psnr_cap))
        suite.descriptions.update(
            l2="mean((x - y)^2) over C, H, W on [-1, 1] images (torch)",
            psnr=f"torchmetrics {package_version('torchmetrics')} peak_signal_noise_ratio, data_range=1 on [0, 1] "
                 f"images, per image, capped at {psnr_cap:g} dB",
            ms_ssim=f"torchmetrics {package_version('torchmetrics')} multiscale_structural_similarity_index_measure"
                    f", [0, 1] images, data_range=1, 11x11 Gaussian sigma 1.5, k1=0.01, k2=0.03, betas "
                    f"{list(MS_SSIM_BETAS)}, normalize='relu'",
        )
        suite._setup_lpips(cfg, device)
        suite._setup_id(cfg, id_crop, device)
        return suite

    def _setup_lpips(self, cfg: Mapping[str, Any], device: torch.device | str) -> None:
        backbone = cfg.get("lpips_backbone")
        net = str(cfg.get("lpips_net", "alex"))
        if not backbone:
            self.skipped["lpips"] = ("metrics.lpips_backbone is not set (a local torchvision-layout "
                                     f"'{net}' features.* weight file); nothing is downloaded")
            return
        self.lpips = LPIPSLoss.from_pretrained(backbone, net=net).to(device)
        self.descriptions["lpips"] = (f"lpips {package_version('lpips')} LPIPS(net='{net}', version='0.1'): "
                                      "trunk from metrics.lpips_backbone, linear layers from the lpips wheel; "
                                      "[-1, 1] images")

    def _setup_id(self, cfg: Mapping[str, Any], crop: Sequence[int] | None, device: torch.device | str) -> None:
        name = str(cfg.get("id_net") or "irse50")
        if name not in ID_NETS:
            raise ValueError(f"unknown metrics.id_net {name!r}; choose one of {list(ID_NETS)}")
        weights = cfg.get("id_weights")
        if not weights:
            self.skipped["id_sim"] = (f"metrics.id_weights is not set: no local {_ID_FILES[name]} weights for "
                                      f"metrics.id_net={name}; nothing is downloaded")
            return
        kwargs = dict(cfg.get("id_net_kwargs") or {})
        self.id_net = build_id_net(name, weights, crop=crop, **kwargs).to(device)
        crop_txt = "no crop" if crop is None else f"crop [top, bottom, left, right] = {list(crop)} at 256 px"
        self.descriptions["id_sim"] = (f"cosine similarity of {_ID_DESCRIPTIONS[name]} embeddings; {crop_txt}, "
                                       "then adaptive average pooling to the network input")

    @property
    def names(self) -> list[str]:
        """Column names of the metrics that run, in table order."""
        out = ["l2", "psnr"]
        if self.lpips is not None:
            out.append("lpips")
        out.append("ms_ssim")
        if self.id_net is not None:
            out.append("id_sim")
        return out

    def modules(self) -> list[nn.Module]:
        """The networks held (for moving / counting)."""
        return [m for m in (self.lpips, self.id_net) if m is not None]

    @torch.no_grad()
    def compute(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every metric that runs, name -> per-image values [N] (float64 on CPU)."""
        _check_pair(pred, target)
        pred, target = pred.float(), target.float()
        out = {"l2": l2(pred, target), "psnr": psnr(pred, target, self.psnr_cap)}
        if self.lpips is not None:
            out["lpips"] = self.lpips(pred, target, per_sample=True)
        out["ms_ssim"] = ms_ssim(pred, target)
        if self.id_net is not None:
            out["id_sim"] = self.id_net.similarity(pred, target)
        return {k: out[k].detach().double().cpu() for k in self.names}


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
