"""Evaluation of inverters on fixed splits: per-image metrics, resumable runs, reports (``python evaluate.py``)."""

from .metrics import HIGHER_IS_BETTER, METRIC_LABELS, METRICS, Metric, MetricSuite, l2, ms_ssim, psnr
from .report import markdown_table, plot_metrics, write_report
from .runner import ResultCache, check_generator, evaluate, measure_latency, register_resolvers, summarize

__all__ = [
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
