"""``flowspec report`` into a pipe or a file: the table is plain text with every cell in full (no
80-column truncation), and ``--detail step|level`` sums a large spec per step or per level."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.report import grouped, report_spec

ROOT = Path(__file__).resolve().parent.parent
GLOW = ROOT / "specs" / "glow.yaml"


def _report_through_a_pipe(*args: str) -> str:
    """The CLI's stdout captured as a pipe is (not a terminal), in an 80-column environment."""
    result = CliRunner().invoke(app, ["report", str(GLOW), *args], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def report():
    return report_spec(flowspec.load_spec(GLOW))


def test_a_piped_report_has_full_layer_names_and_numbers(report):
    out = _report_through_a_pipe()
    assert "…" not in out
    for row in (report.rows[0], report.rows[3], report.rows[-1]):
        assert row.name in out and f"{row.params:,}" in out
    assert "level2.step31.coupling" in out and f"{report.params:,}" in out
    assert max(len(line) for line in out.splitlines()) > 80  # full width, not fitted to a terminal
    lines = [line for line in out.splitlines() if line.startswith("level0.step0.coupling ")]
    assert len(lines) == 1 and "coupling" in lines[0].split()[1]


def test_a_piped_report_summarises_per_level(report):
    out = _report_through_a_pipe("--detail", "level")
    levels = grouped(report, "level")
    names = [row.name for row in levels.rows]
    assert {"level0", "level1", "level2"} <= set(names) and len(names) < 10
    for row in levels.rows:
        assert f"{row.params:,}" in out
    assert "level0.step0" not in out
