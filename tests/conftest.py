"""Shared fixtures: tiny generators, the demo generator, and the optional ../shared folder."""

from __future__ import annotations

import os
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
