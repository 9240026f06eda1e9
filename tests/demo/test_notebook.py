"""docs/practice.ipynb runs top to bottom in a real Jupyter kernel, offline: no cell raises.

A real kernel (nbclient + ipykernel) rather than exec-ing the cells: the notebook is for
Jupyter, where an event loop is already running, which is the case the sync facade
(`chain.complete`) must handle. Every section of the notebook ends in asserts, so a behaviour
the notebook describes that stops holding fails here.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "practice.ipynb"


def test_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_every_cell_runs(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # CellExecutionError (with the cell's traceback) if any cell raises, including an assert
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.outputs)
    assert "TimeoutExceeded after 0.5" in text  # the hang section printed its verdict
    assert "CircuitOpen: the circuit for 'default' is open" in text
