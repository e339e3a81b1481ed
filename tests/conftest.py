"""Shared fixtures: tiny generators, the demo generator, and the optional ../shared folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inversion.models import Generator, demo_generator

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INVERSION_SHARED", REPO.parent / "shared"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder (real LPIPS weights, faces, CelebA-HQ mapping); tests skip without it."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED} (set INVERSION_SHARED); skipping tests that need real data")
    return SHARED


@pytest.fixture(scope="session")
def demo_G() -> Generator:
    return demo_generator()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> dict:
    """``python train.py`` with no arguments (the README's main job), run once per session in a temporary
    folder: ``{"cwd", "run_dir", "export", "result"}``. Tests of the trained demo encoder share it."""
    cwd = tmp_path_factory.mktemp("demo_run")
    result = subprocess.run([sys.executable, str(REPO / "train.py")], cwd=cwd, capture_output=True, text=True,
                            timeout=1200)
    run_dir = cwd / "outputs" / "train" / "demo"
    return {"cwd": cwd, "run_dir": run_dir, "export": run_dir / "export" / "inverter.pt", "result": result}


@pytest.fixture(scope="session")
def demo_export(demo_run) -> Path:
    """The trained demo encoder's export (fails, with train.py's stderr, if the demo run failed)."""
    assert demo_run["result"].returncode == 0, demo_run["result"].stderr[-3000:]
    return demo_run["export"]
