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
