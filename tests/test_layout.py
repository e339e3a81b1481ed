"""The package stays in small owners: no module of inversion/ grows past ~550 lines."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "inversion"
MAX_LINES = 550


def test_no_module_is_too_long():
    sizes = {p.relative_to(PACKAGE.parent).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 20
    too_long = {k: n for k, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"split these modules (> {MAX_LINES} lines): {too_long}"
