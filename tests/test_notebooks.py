"""The notebooks in docs/notebooks/ run from top to bottom (nbclient, a real kernel), on a tiny
budget: FLOWSPEC_NOTEBOOK_STEPS=3 replaces each notebook's training steps, so they cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "docs" / "notebooks").glob("*.ipynb"))


def test_there_are_the_three_notebooks():
    assert [path.stem for path in NOTEBOOKS] == ["01-spec-and-train-digits", "02-conditional-digits",
                                                 "03-maf-density-on-a-table"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    monkeypatch.setenv("FLOWSPEC_NOTEBOOK_STEPS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert figures, "no figure was drawn"
    assert "3 training steps" in "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
