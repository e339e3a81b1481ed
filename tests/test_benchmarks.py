"""benchmarks/run.py, the one performance entry point, runs on CPU at small sizes (so it never rots)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_run_py_prints_the_table_and_writes_the_device_json_on_cpu(capsys):
    sys.path.insert(0, str(REPO))
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
    sys.path.insert(0, str(REPO))
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
