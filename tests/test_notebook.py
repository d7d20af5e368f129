"""notebooks/baseline.ipynb runs top to bottom on a stored run."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

NOTEBOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "notebooks", "baseline.ipynb")


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_baseline_notebook_runs(tiny_run, monkeypatch):
    monkeypatch.setenv("UPCALL_LAB_RUN", tiny_run)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
    client.execute()        # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert tiny_run in text
    html = "".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "futex_pingpong" in html
    assert any("image/png" in o.get("data", {}) for o in outputs)
