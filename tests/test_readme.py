"""README.md's Python blocks run as written (in order, one namespace), and it stays a short user guide."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
#: Shell blocks marked ``<!-- runnable -->`` on the line before: commands that run offline on CPU as written.
SHELL = re.findall(r"^<!-- runnable -->\n```bash\n(.*?)^```", README.read_text(), flags=re.S | re.M)


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


@pytest.mark.slow
def test_readme_runnable_shell_blocks_run_as_written(tmp_path):
    import os
    import subprocess
    import sys

    assert SHELL, "README.md has no <!-- runnable --> shell block"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for i, block in enumerate(SHELL):
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, f"README.md runnable block {i + 1} failed:\n{block}\n{r.stderr[-3000:]}"
    assert (tmp_path / "samples.png").is_file()  # the sample command wrote where it said


def test_the_config_map_lists_every_group_and_option():
    from inversion.config import CONF_DIR, options

    text = README.read_text()
    section = text[text.index("## Config map"):text.index("## Weights")]
    for group in sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir()):
        assert f"`{group}`" in section, group
        for option in options(group):
            assert f"`{option}`" in section, f"{group}={option} is missing from README's config map"
