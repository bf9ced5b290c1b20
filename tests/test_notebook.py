"""examples/lenet_d2l.ipynb, the chapter as a notebook: stored without outputs, and run top to bottom
through a real Jupyter kernel on the real Fashion-MNIST, with its short settings."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from conftest import apply, real_data
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "lenet_d2l.ipynb"
EPOCH_LINE = re.compile(r"^epoch \d, loss \d+\.\d{4}, train acc 0\.\d{3}, test acc 0\.\d{3}, time \d+\.\d sec$", re.M)


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@apply(real_data)
@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_in_a_jupyter_kernel(tmp_path, monkeypatch):
    # A kernel of this interpreter (the venv's), whatever kernels the user has installed.
    write_kernel_spec(tmp_path / "jupyter" / "kernels" / "lenet_exp")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("LENET_EXP_SHORT", "1")  # the notebook's short settings: debug=limit
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    work = tmp_path / "work"  # the notebook's folder: its runs go to work/outputs/
    work.mkdir()

    client = NotebookClient(notebook, timeout=300, kernel_name="lenet_exp", resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError, naming the cell, when any cell fails

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert len(EPOCH_LINE.findall(printed)) == 4  # two short epochs of the book's run, two of lenet_modern's
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) == 3  # the curves, the confusion matrix, the misclassified images
    table = next(o.data["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
    assert "| the book's (sigmoid LeNet) | 2 |" in table and "| lenet_modern | 2 |" in table
    assert "test accuracy on 10000 images" in printed and printed.count("true: ") == 5  # five pictures predicted
    runs = sorted(path.parent for path in (work / "outputs").rglob("metrics.json"))
    assert len(runs) == 2 and all((run / "csv" / "metrics.csv").is_file() for run in runs)
