"""Runs every notebook in notebooks/ top to bottom in quick mode (VGRAD_QUICK=1), as CI does.

The notebooks must not download anything: $VGRAD_DATA points at an empty folder and every mirror at a closed
port on 127.0.0.1, so a download attempt fails the run. They are committed without outputs.
"""
import os
import socket
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

import vgrad  # noqa: E402
from vgrad import data  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds; a generous bound for a shared 2-core machine, not a timing assertion


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"


def test_there_is_a_notebook_per_part_of_the_assignment():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_backward_by_hand.ipynb", "02_computation_graph.ipynb", "03_normalize_and_relu.ipynb",
            "04_deeper_and_residual.ipynb", "05_cnn.ipynb"} <= names  # questions 1-4, 5-7, 8-9, 10, 11-12


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("VGRAD_QUICK", "1")
    monkeypatch.setenv("VGRAD_DATA", str(tmp_path / "data"))
    # Jupyter's inline backend (plots become PNG outputs), whatever the environment says.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for variable, _ in data.MIRRORS.values():
        monkeypatch.setenv(variable, closed_port_url())
    # The kernel imports the vgrad under test, wherever it is.
    root = os.path.dirname(os.path.dirname(os.path.abspath(vgrad.__file__)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} should plot something"
    assert os.listdir(tmp_path) == [] or set(os.listdir(tmp_path)) <= {"data"}  # wrote nothing else
