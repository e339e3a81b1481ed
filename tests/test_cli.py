"""The command-line tools in one place: ``python -m inversion <command>`` (and the ``inversion`` console script)
dispatches to inversion.cli.<command>; the old ``python -m inversion.<module>`` spellings still work, with a
DeprecationWarning; ``sample`` reads conf/sample.yaml through inversion.config.compose with key=value overrides."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from inversion import cli

REPO = Path(__file__).resolve().parents[1]
ALIASES = {"inversion.invert": "invert", "inversion.edit": "edit", "inversion.sample": "sample",
           "inversion.export": "export", "inversion.data.prepare": "prepare"}


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_help_lists_every_command_with_one_line(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, command in cli.COMMANDS.items():
        assert f"  {name}" in out and command.summary in out and "\n" not in command.summary
    assert set(cli.COMMANDS) == {"invert", "edit", "sample", "export", "prepare"}
    assert cli.main([]) == 2  # no command: the usage, on stderr


def test_python_dash_m_inversion_help():
    r = _python("-m", "inversion", "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert all(name in r.stdout for name in cli.COMMANDS) and "usage: python -m inversion" in r.stdout


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_parses_help(name, capsys):
    module = importlib.import_module(cli.COMMANDS[name].module)
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"], prog=f"inversion {name}")
    assert exc.value.code == 0 and f"usage: inversion {name}" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error_with_a_suggestion(capsys):
    assert cli.main(["invrt"]) == 2
    err = capsys.readouterr().err
    assert "'invrt'" in err and "did you mean 'invert'" in err


def test_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"inversion": "inversion.cli:main"}


@pytest.mark.parametrize("old,command", sorted(ALIASES.items()))
def test_old_module_spellings_still_work_and_warn(old, command):
    r = _python("-m", old, "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"usage: python -m {old}" in r.stdout
    assert "DeprecationWarning" in r.stderr and f"python -m inversion {command}" in r.stderr


def test_sample_composes_conf_with_key_value_overrides(tmp_path, capsys):
    out = tmp_path / "deep" / "grid.png"
    assert cli.main(["sample", f"out={out}", "num_images=4", "seed=3", "generator.img_resolution=32"]) == 0
    assert Image.open(out).size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)  # 2x2 grid of 32 px, padding 2
    assert cli.main(["sample", "--print-config", "num_images=2", "truncation_psi=0.7"]) == 0
    printed = capsys.readouterr().out
    assert "num_images: 2" in printed and "truncation_psi: 0.7" in printed and "demo_generator" in printed


def test_sample_errors_name_the_key(tmp_path, capsys):
    assert cli.main(["sample", "no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    assert cli.main(["sample", "generator=stylegan2_256", f"out={tmp_path / 'g.png'}"]) == 2
    assert "paths.stylegan2_256" in capsys.readouterr().err  # the real generators need their weight file
    assert cli.main(["sample", "num_images"]) == 2
    assert "key=value" in capsys.readouterr().err
