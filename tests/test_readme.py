"""README.md's Python blocks run as written (in order, one namespace), and it stays a short user guide."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_is_a_short_guide_with_runnable_blocks():
    assert len(README.read_text().splitlines()) <= 300, "README.md: keep it a user guide; details go to docs/"
    assert len(BLOCKS) >= 3
    for link in re.findall(r"\]\((docs/[^)]+)\)", README.read_text()):
        assert (README.parent / link).is_file(), link


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a block writes lands in the repository
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(BLOCKS):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as err:  # name the block that failed
            raise AssertionError(f"README.md python block {i + 1} failed: {err!r}\n{block}") from err
