"""Evaluation report: a Markdown file with the metrics table, image grids and plots (matplotlib, Agg backend).

* ``grid.png`` -- one row per image: input | reconstruction at iteration 1 | ... | iteration T, stacked from
  the per-image strips the runner saved (``cache/thumbs/<id>.png``);
* ``plots/metrics_vs_iteration.png`` -- the mean of every metric against the ReStyle iteration;
* ``report.md`` -- protocol, table (mean ± std per iteration), skipped metrics, latency, links to the above.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless, deterministic backend; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from ..imageio import stack_rows  # noqa: E402
from .metrics import HIGHER_IS_BETTER, METRIC_LABELS  # noqa: E402
from .refinement import SEED_LABELS, SEEDS  # noqa: E402

__all__ = ["markdown_refinement", "markdown_table", "plot_metrics", "plot_refinement", 
           "write_report"]

GRID_FILE = "grid.png"
PLOT_FILE = "plots/metrics_vs_iteration.png"
REFINE_PLOT_FILE = "plots/refine_quality_vs_steps.png"


def plot_metrics(rows: Sequence[Mapping[str, Any]], names: Sequence[str], path: str | os.PathLike,
                 title: str = "") -> Path:
    """One panel per metric: mean (± std band) against the iteration."""
    iters = [r["iteration"] for r in rows]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        mean = [r["mean"][name] for r in rows]
        std = [r["std"][name] for r in rows]
        ax.plot(iters, mean, marker="o")
        ax.fill_between(iters, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
        ax.set_title(f"{METRIC_LABELS[name]} {'↑' if HIGHER_IS_BETTER[name] else '↓'}")
        ax.set_xlabel("iteration")
        ax.set_xticks(iters)
        ax.grid(alpha=0.3)
    return _save_figure(fig, path, title)


def _save_figure(fig: Any, path: str | os.PathLike, title: str = "") -> Path:
    """Title, tight layout, save as PNG (no software tag: same bits for the same figure), close."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def markdown_table(rows: Sequence[Mapping[str, Any]], names: Sequence[str], with_std: bool = True) -> str:
    """Markdown table: one row per iteration, ``mean ± std`` per metric."""
    head = "| iteration | " + " | ".join(f"{METRIC_LABELS[n]} {'↑' if HIGHER_IS_BETTER[n] else '↓'}" for n in names)
    lines = [head + " |", "|---:" * (len(names) + 1) + "|"]
    for row in rows:
        cells = [f"{row['mean'][n]:.4f} ± {row['std'][n]:.4f}" if with_std else f"{row['mean'][n]:.4f}"
                 for n in names]
        lines.append(f"| {row['iteration']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_refinement(summary: Mapping[str, Any], names: Sequence[str]) -> str:
    """Two Markdown tables: metrics (mean) per step for each seed, and the steps needed to reach each threshold."""
    seeds = summary["seeds"]
    head = ["step"] + [f"{METRIC_LABELS[n]} {'↑' if HIGHER_IS_BETTER[n] else '↓'} ({s})" for n in names for s in seeds]
    lines = ["| " + " | ".join(head) + " |", "|---:" * len(head) + "|"]
    for k, step in enumerate(summary["steps"]):
        cells = [f"{summary['per_step'][s][k]['mean'][n]:.4f}" for n in names for s in seeds]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    if summary["reach"]:
        lines += ["", "Steps needed to reach X (first step of the checkpoint grid; `>N`: not within the budget N; "
                  "median over images, and the fraction of images that reach X):", ""]
        head = ["metric", "X"] + [f"{SEED_LABELS[s]}: mean curve / median image / reached" for s in seeds]
        if set(seeds) == set(SEEDS):
            head.append("speed-up (mean curve)")
        lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        budget = summary["steps"][-1]
        for row in summary["reach"]:
            cells = [METRIC_LABELS[row["metric"]], f"{'≥' if HIGHER_IS_BETTER[row['metric']] else '≤'} "
                     f"{row['threshold']:g}"]
            for s in seeds:
                r = row[s]
                fmt = lambda v: f">{budget}" if v is None else str(v)
                cells.append(f"{fmt(r['mean_curve_steps'])} / {fmt(r['median_image_steps'])} / "
                             f"{100 * r['fraction_reached']:.0f}%")
            if set(seeds) == set(SEEDS):
                a, b = row["mean"]["mean_curve_steps"], row["encoder"]["mean_curve_steps"]
                if b is None or a == b == 0:
                    cells.append("—")
                elif b == 0:
                    cells.append("∞")
                else:  # the mean-seeded run may not reach X at all: then at least budget / b
                    cells.append(f"{a / b:.1f}×" if a is not None else f"> {budget / b:.1f}×")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_refinement(summary: Mapping[str, Any], names: Sequence[str], path: str | os.PathLike, title: str = "",
                    encoder_final: Mapping[str, float] | None = None) -> Path:
    """One panel per metric: the mean against the refinement step (symlog x axis), one curve per seed, with
    the encoder's own result as a dashed line."""
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.1), squeeze=False)
    for ax, name in zip(axes[0], names):
        for seed in summary["seeds"]:
            rows = summary["per_step"][seed]
            steps = [r["step"] for r in rows]
            mean = [r["mean"][name] for r in rows]
            std = [r["std"][name] for r in rows]
            ax.plot(steps, mean, marker="o", ms=3, label=SEED_LABELS[seed])
            ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.15)
        if encoder_final is not None and name in encoder_final:
            ax.axhline(encoder_final[name], color="gray", ls="--", lw=1, label="encoder only")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0, right=max(summary["steps"]) * 1.1)
        ax.set_title(f"{METRIC_LABELS[name]} {'↑' if HIGHER_IS_BETTER[name] else '↓'}")
        ax.set_xlabel("refinement step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save_figure(fig, path, title)


def _latency_lines(timing: Mapping[str, Any]) -> list[str]:
    lat = timing.get("latency")
    if not lat:
        return ["Latency not measured (`latency.enabled=false`)."]
    return [
        f"- {lat['ms_per_image_median']:.2f} ms/image (median over {lat['timed_batches']} batches of "
        f"{lat['batch_size']}, after {lat['warmup_batches']} warm-up batches; device {timing['device']} "
        f"({timing['device_name']}), {timing['dtype']}, "
        f"{'synchronised' if lat['synchronized'] else 'CPU, no asynchronous work to synchronise'})",
        f"- measures: {lat['what']}",
        f"- this run: {timing['images_computed']} images computed, {timing['images_cached']} taken from the cache",
    ]


def write_report(out_dir: str | os.PathLike, metrics: Mapping[str, Any], timing: Mapping[str, Any],
                 strips: Sequence[str | os.PathLike]) -> Path:
    """Write ``report.md`` (+ ``grid.png`` and the plot) into ``out_dir``; returns the report path."""
    out_dir = Path(out_dir)
    rows = metrics["metrics"]["per_iteration"]
    names = list(metrics["higher_is_better"])
    ckpt, data, protocol = metrics["checkpoint"], metrics["data"], metrics["protocol"]
    plot = plot_metrics(rows, names, out_dir / PLOT_FILE, title=f"{Path(ckpt['path']).name} on {data['split']}")
    grid = stack_rows([[Image.open(p).convert("RGB")] for p in strips], out_dir / GRID_FILE)
    lines = [
        f"# Evaluation: `{Path(ckpt['path']).name}` on `{data['split']}`",
        "",
        f"- checkpoint: `{ckpt['path']}` (sha256 `{ckpt['sha256'][:16]}…`), encoder {ckpt['encoder']}, "
        f"{ckpt['num_iters']} iteration(s), generator {ckpt['generator']['img_resolution']} px",
        f"- data: {data['name']} ({data['kind']}), split `{data['split']}`, {data['num_images']} images"
        + (f", root `{data['root']}`" if data.get("root") else ""),
        f"- protocol: {protocol['resize']}; 8-bit quantised: {protocol['quantize_uint8']}; encoder input "
        f"{protocol['input_size']} px via '{protocol['input_resize_mode']}'; "
        f"PSNR capped at {protocol['psnr_cap_db']:g} dB; {protocol['value_ranges']}",
        f"- refinement: {protocol['refine']}",
        "",
        f"## Metrics (mean ± std over {data['num_images']} images)",
        "",
        markdown_table(rows, names),
        "",
    ]
    for name, reason in metrics["skipped"].items():
        lines.append(f"- **{METRIC_LABELS.get(name, name)} skipped**: {reason}")
    lines += ["", "Implementations:", ""]
    lines += [f"- {METRIC_LABELS[n]}: {metrics['implementations'][n]}" for n in names]
    lines += ["", "## Latency", "", *_latency_lines(timing), "", "## Metrics vs iteration", "",
              f"![metrics vs iteration]({plot.relative_to(out_dir).as_posix()})", ""]
    refine = metrics["metrics"].get("refine")
    if refine is not None:
        rcfg = protocol["refine"]["config"]
        what = rcfg.get("space") or rcfg.get("name", "?")  # latent space, or "pti" (generator tuning)
        if (rcfg.get("pivot") or {}).get("enabled"):
            what += f", pivot: {rcfg['pivot'].get('name')} {rcfg['pivot'].get('num_steps')} steps"
        rplot = plot_refinement(refine, names, out_dir / REFINE_PLOT_FILE, encoder_final=metrics["metrics"]["final"],
                                title=f"refinement ({what}) on {data['split']}")
        lines += ["## Refinement: quality vs steps", "",
                  f"Refiner: `{protocol['refine']['config']}`; seeds: "
                  + ", ".join(SEED_LABELS[s] for s in refine["seeds"]) + ". Step 0 of the encoder-seeded run is the "
                  "encoder's own result. Refinement time is in `timing.json`.", "",
                  markdown_refinement(refine, names), "",
                  f"![quality vs refinement steps]({rplot.relative_to(out_dir).as_posix()})", ""]
    if grid is not None:
        refined = [f"refined, {SEED_LABELS[s]}" for s in (refine or {}).get("seeds", [])]
        cols = " | ".join(["input", *(f"iteration {t}" for t in range(1, len(rows) + 1)), *refined])
        lines += ["## Reconstructions", "", f"Columns: {cols}.", "", f"![reconstructions]({GRID_FILE})", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
