"""Evaluation of inverters on fixed splits: per-image metrics, resumable runs, reports (``python evaluate.py``)."""

from ..config import register_resolvers
from .cache import ResultCache
from .checkpoint import check_generator
from .latency import measure_latency
from .metrics import HIGHER_IS_BETTER, METRIC_LABELS, METRICS, Metric, MetricSuite, l2, ms_ssim, psnr
from .outputs import summarize
from .report import markdown_table, plot_metrics, write_report
from .runner import evaluate
from .settings import EvalSettings

__all__ = [
    "EvalSettings",
    "HIGHER_IS_BETTER",
    "METRICS",
    "Metric",
    "METRIC_LABELS",
    "MetricSuite",
    "ResultCache",
    "check_generator",
    "evaluate",
    "l2",
    "markdown_table",
    "measure_latency",
    "ms_ssim",
    "plot_metrics",
    "psnr",
    "register_resolvers",
    "summarize",
    "write_report",
]
