"""benchmarks/run.py, the one performance entry point, runs on CPU at small sizes (so it never rots)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_run_py_prints_the_table_and_writes_the_device_json_on_cpu(capsys):
    from benchmarks import run

    results = run.main(["--device", "cpu", "--quick", "--parts", "infer", "refine", "data"])
    whats = [row["what"] for row in results["table"]]
    assert any(w.startswith("pSp inference") for w in whats) and any("ReStyle-5" in w for w in whats)
    assert any(w.startswith("W+ optimization") for w in whats) and any("prepared" in w for w in whats)
    assert all(row["ours"] > 0 for row in results["table"])
    out = capsys.readouterr().out
    assert "NOT comparable" in out and "n/a on CPU" in out
    slug = "".join(c if c.isalnum() else "_" for c in results["device"]).strip("_").lower()
    saved = json.loads((REPO / "benchmarks" / "results" / f"{slug}.json").read_text())
    assert saved["table"] == results["table"] and not saved["full_size"]


def test_fast_path_sweep_reports_each_setting_with_its_guard(monkeypatch, capsys):
    from benchmarks import inference, run, train_step

    monkeypatch.setattr(run, "SWEEP", [run.SWEEP[0], run.SWEEP[3]])  # fp32, bf16 + channels_last
    monkeypatch.setattr(train_step, "METHODS", {"pSp": train_step.METHODS["pSp"]})
    monkeypatch.setattr(inference, "METHODS", {"ReStyle-pSp-5": inference.METHODS["ReStyle-pSp-5"]})
    results = run.main(["--device", "cpu", "--quick", "--sweep"])
    fp32, fast = results["sweep"]["fp32"], results["sweep"]["bf16 + channels_last"]
    assert set(fp32) == set(fast) and len(fp32) == 3  # train pSp; infer ReStyle at batch 1 and 2
    assert all(v["rel_error_vs_fp32"] is None for v in fp32.values())
    # the guard is measured for the fast setting: bf16 stays within a few percent of fp32 on random weights
    assert all(0 < v["rel_error_vs_fp32"] < 0.05 for v in fast.values())
    assert "fast-path sweep" in capsys.readouterr().out


def test_op_kind_separates_the_generator_fir_from_other_convolutions():
    from benchmarks.breakdown import KINDS, op_kind

    assert op_kind("aten::cudnn_convolution", [[8, 512, 9, 9], [512, 1, 4, 4], []]) == KINDS[1]  # FIR blur
    assert op_kind("aten::convolution_backward", [[8, 64, 32, 32], [8, 64, 32, 32], [64, 64, 3, 3]]) == KINDS[0]
    assert op_kind("aten::addmm", [[512], [8, 512], [512, 512]]) == "matrix product"
    assert op_kind("aten::adaptive_avg_pool2d", [[8, 3, 1024, 1024]]).startswith("normalisation")
    assert op_kind("aten::leaky_relu") == op_kind("aten::addcdiv_") == "elementwise / other"
    assert op_kind("aten::copy_") == op_kind("aten::constant_pad_nd") == "copy / layout"


def test_breakdown_times_each_part_and_sums_profiled_time_by_kind_and_phase(capsys):
    from benchmarks import breakdown

    r = breakdown.main(["--device", "cpu", "--resolution", "32", "--repeats", "1", "--warmup", "0", "--top", "5"])
    parts = {row["part"]: row for row in r["parts"]}
    assert {"encoder forward + backward", "generator forward + backward to ws", "optimizer step"} <= set(parts)
    assert {"loss 'l2' (resize + loss) forward + backward", "loss 'id' (resize + loss) forward + backward"} <= set(
        parts)
    assert all(row["ms_per_step"] > 0 and row["calls_per_step"] == 1 for row in r["parts"])
    prof = r["profile"]
    kinds = prof["by_kind"]
    # the step's convolutions run forward and backward, the generator's FIR filter too, and Ranger's update is
    # elementwise work in the optimizer phase
    assert kinds["convolution"]["forward"] > 0 and kinds["convolution"]["backward"] > 0
    assert kinds["FIR filter (depthwise 4x4 conv)"]["forward"] > 0
    assert kinds["FIR filter (depthwise 4x4 conv)"]["backward"] > 0
    assert kinds["elementwise / other"]["optimizer"] > 0 and kinds["convolution"]["optimizer"] == 0
    total = sum(v["total"] for v in kinds.values())
    assert abs(total - prof["total_ms_per_step"]) < 1e-6 * max(total, 1)
    assert len(prof["top_ops"]) == 5 and prof["top_ops"][0]["ms_per_step"] >= prof["top_ops"][-1]["ms_per_step"]
    out = capsys.readouterr().out
    assert "parts timed alone" in out and "torch.profiler" in out


def test_gpu_session_script_checks_its_packages_and_rejects_unknown_parts(tmp_path):
    """The GPU session script's set-up runs here (imports, GPU record) and an unknown part is a usage error."""
    import os
    import subprocess

    env = {**os.environ, "OUT": str(tmp_path)}
    r = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_session.sh"), "no-such-part"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "usage:" in r.stderr, r.stderr[-2000:]
    assert "torch" in (tmp_path / "gpu.txt").read_text()


def test_roofline_counts_the_official_generator_arithmetic_on_the_meta_device():
    """The 1024 px generator's forward counts 148.5 GFLOP per image without our FIR convolutions: the performance
    issue's FlopCounterMode figure for the official rosinality generator (whose FIR is a custom op it cannot see).
    Counting needs no computation: the models run on the meta device."""
    import torch

    from benchmarks.common import frozen_generator
    from benchmarks.roofline import FUSABLE, TrafficCounter, conv_flop

    G = frozen_generator(1024, 1.0, torch.device("cpu")).to("meta")
    ws = torch.empty(2, G.num_ws, G.w_dim, device="meta")
    with torch.no_grad(), TrafficCounter() as counter:
        G.synthesis(ws)
    s = counter.summary()
    fir = s["gflop_by_kind"]["FIR filter (depthwise 4x4 conv)"]
    assert abs((s["gflop"] - fir) / 2 - 148.5) < 0.1 and fir > 0
    assert s["gb"] > s["gb_fusable"] > 0 and s["gb_by_kind"]["copy / layout"] < 0.05 * s["gb"]
    assert set(FUSABLE) <= set(s["gb_by_kind"])
    # the backward of a grouped convolution costs its forward once per gradient (input, weight)
    x, w = torch.empty(1, 8 * 4, 6, 6, device="meta"), torch.empty(8 * 5, 4, 3, 3, device="meta")
    out = torch.empty(1, 8 * 5, 6, 6, device="meta")
    fwd = conv_flop("convolution", (x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 8), out)
    assert fwd == 2 * out.numel() * 4 * 9
    bwd = conv_flop("convolution_backward", (out, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 8,
                                             [True, True, False]), None)
    assert bwd == 2 * fwd


def test_roofline_runs_small_and_writes_its_totals(tmp_path, capsys):
    from benchmarks import roofline

    r = roofline.main(["--resolution", "64", "--batch", "2", "--encoder-size", "64", "--width", "0.125",
                       "--out", str(tmp_path / "roofline.json")])
    t = r["totals"]
    assert set(t) == {"pSp train step", "ReStyle-pSp-5 train step", "pSp inference", "ReStyle-pSp-5 inference"}
    # ReStyle's step is five pSp-like iterations: it moves more bytes than pSp's
    assert t["ReStyle-pSp-5 train step"]["gb"] > t["pSp train step"]["gb"] > t["pSp inference"]["gb"] > 0
    assert all(row["floors"]["memory_ms_eager_fp32"] > row["floors"]["memory_ms_unfusable_fp32"] for row in t.values())
    assert json.loads((tmp_path / "roofline.json").read_text())["batch"] == 2
    assert "Counted on the meta device" in capsys.readouterr().out


def test_generator_benchmark_has_stylegan3_rows(capsys):
    """benchmarks.generator --arch stylegan3-t / -r times NVIDIA's FFHQ widths (here at 16 px, one repeat)."""
    from benchmarks.generator import main

    for arch in ("stylegan3-t", "stylegan3-r"):
        rows = main(["--arch", arch, "--resolution", "16", "--batch-sizes", "1", "--repeats", "1", "--warmup", "0"])
        assert [r["what"] for r in rows] == ["forward", "forward+backward to ws"]
        assert all(r["arch"] == arch and r["ms_per_image"] > 0 for r in rows)
    assert "StyleGAN3-R generator, 16 px" in capsys.readouterr().out
