"""
The exercise notebooks. notebooks/source/ holds them with their answers between nbgrader's markers;
notebooks/build.py makes the student edition (committed in notebooks/student/, the file staff hand out) and the
solutions edition (built here, not committed). What is tested:

- the sources and the student edition are committed without outputs, and the student edition is what the
  sources give (a stale one fails: run `python notebooks/build.py`);
- the solutions edition runs top to bottom in quick mode (VGRAD_QUICK=1), plots something, and every check in
  it says PASS;
- the student edition, with no answer written, runs top to bottom without an error, and every check says FAIL
  with its reason (not a traceback); no answer leaks into it, and it has the student write their own ops;
- the shell commands the notebooks suggest work as written.

The notebooks must not download anything: $VGRAD_DATA points at an empty folder and every mirror at a closed
port on 127.0.0.1, so a download attempt fails the run.
"""
import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

import vgrad  # noqa: E402
from vgrad import data  # noqa: E402

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted((NOTEBOOKS_DIR / "source").glob("*.ipynb"))
STUDENT = sorted((NOTEBOOKS_DIR / "student").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds; a generous bound for a shared 2-core machine, not a timing assertion


def _load_build():
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"


def offline_quick_env(monkeypatch, tmp_path):
    """Quick mode, no downloads, inline plots, and the vgrad under test in the kernel."""
    monkeypatch.setenv("VGRAD_QUICK", "1")
    monkeypatch.setenv("VGRAD_DATA", str(tmp_path / "data"))
    # Jupyter's inline backend (plots become PNG outputs), whatever the environment says.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for variable, _ in data.MIRRORS.values():
        monkeypatch.setenv(variable, closed_port_url())
    root = os.path.dirname(os.path.dirname(os.path.abspath(vgrad.__file__)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))


def execute(nb, workdir):
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    return nb


def text_of(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def check_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "check" in c.metadata.get("tags", [])]


def test_there_is_a_notebook_per_part_of_the_assignment():
    parts = {"01_backward_by_hand.ipynb", "02_computation_graph.ipynb", "03_normalize_and_relu.ipynb",
             "04_deeper_and_residual.ipynb", "05_cnn.ipynb"}  # questions 1-4, 5-7, 8-9, 10, 11-12
    assert parts <= {p.name for p in SOURCES}
    assert {p.name for p in STUDENT} == {p.name for p in SOURCES}


@pytest.mark.parametrize("path", SOURCES + STUDENT, ids=[f"{p.parent.name}/{p.stem}" for p in SOURCES + STUDENT])
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


def test_student_edition_is_up_to_date():
    problems = build.stale("student")
    assert not problems, "\n".join(problems) + "\nrun: python notebooks/build.py"


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_solutions_edition_runs_and_passes_its_checks(source, tmp_path, monkeypatch):
    offline_quick_env(monkeypatch, tmp_path)
    (text,) = build.build("solutions", [source]).values()
    nb = execute(nbformat.reads(text, as_version=4), tmp_path)

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert [o for o in outputs if "image/png" in o.get("data", {})], f"{source.name} should plot something"
    checks = check_cells(nb)
    assert checks, f"{source.name} has no check cells (tagged 'check')"
    for cell in checks:
        said = text_of(cell)
        assert "PASS: " in said and "FAIL: " not in said, f"{source.name}: a check of the answer key fails:\n{said}"
    assert set(os.listdir(tmp_path)) <= {"data"}  # wrote nothing else


@pytest.mark.parametrize("path", STUDENT, ids=[p.stem for p in STUDENT])
def test_student_edition_runs_and_every_check_fails_cleanly(path, tmp_path, monkeypatch):
    offline_quick_env(monkeypatch, tmp_path)
    nb = execute(nbformat.read(path, as_version=4), tmp_path)  # no cell may raise: TODOs don't stop Run All

    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "error"]
            assert "Traceback" not in text_of(cell), text_of(cell)
    checks = check_cells(nb)
    assert checks
    for cell in checks:
        said = text_of(cell)
        assert "FAIL: " in said and "PASS: " not in said, f"{path.name}: a check passes with no answer:\n{said}"
        # The reason is the missing answer, said plainly.
        assert re.search(r"is not written yet|no answer yet", said), said


def solution_lines(source):
    """The lines between the markers of a source notebook that appear nowhere else in it."""
    inside, outside = set(), set()
    for k, cell in enumerate(json.loads(source.read_text())["cells"]):
        for part in build.split_regions(build._source_text(cell), f"{source.name}, cell {k}"):
            lines = part[1] if part[0] == "text" else part[2]
            (outside if part[0] == "text" else inside).update(line.strip() for line in lines)
    return {line for line in inside - outside if len(line) >= 12 and not line.startswith("#")}


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_student_edition_holds_no_answer(source):
    student = (NOTEBOOKS_DIR / "student" / source.name).read_text()
    assert "BEGIN SOLUTION" not in student and "END SOLUTION" not in student
    secret = solution_lines(source)
    assert secret, f"{source.name} has no answers between markers"
    text = "\n".join("".join(c["source"]) for c in json.loads(student)["cells"])
    leaked = sorted(line for line in secret if line in text)
    assert not leaked, f"{source.name}: answers in the student edition: {leaked}"


def test_students_write_their_own_div_and_relu():
    """The built-in vg.Div and vg.ReLU stay for course code; the exercises check the student's own."""
    for name, own, builtin in (("01_backward_by_hand.ipynb", "MyDiv", "vg.Div"),
                               ("03_normalize_and_relu.ipynb", "MyReLU", "vg.ReLU")):
        nb = nbformat.read(NOTEBOOKS_DIR / "student" / name, as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert f"class {own}(vg.Op)" in code and f"check_op({own}," in code
        assert builtin not in code, f"{name} uses {builtin} in its code"


def test_build_replaces_answers_with_todos():
    code = {"cell_type": "code", "source": "def f(x):\n    ### BEGIN SOLUTION return x squared\n    return x * x\n"
                                            "    ### END SOLUTION\n\nanswer = None\n### BEGIN SOLUTION\nanswer = 42\n"
                                            "### END SOLUTION\n"}
    assert build.render(code, "student", "test") == (
        "def f(x):\n    # TODO: return x squared\n    raise NotImplementedError()\n\nanswer = None\n"
        "# TODO: write your code here\n")
    assert build.render(code, "solutions", "test") == "def f(x):\n    return x * x\n\nanswer = None\nanswer = 42\n"
    text = {"cell_type": "markdown", "source": "**Answer:**\n<!-- BEGIN SOLUTION -->\nforty-two\n<!-- END SOLUTION -->"}
    assert build.render(text, "student", "test") == "**Answer:**\n*TODO: your answer here.*"
    for broken in ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "### BEGIN SOLUTION\nx = 1",
                   "x = 1\n### END SOLUTION"):
        with pytest.raises(build.MarkerError):
            build.render({"cell_type": "code", "source": broken}, "student", "test")


def suggested_commands():
    """The shell commands the notebooks suggest: `vgrad-train ...` or `python ...` in backquotes."""
    found = set()
    for source in SOURCES:
        for cell in json.loads(source.read_text())["cells"]:
            found.update(re.findall(r"`((?:vgrad-train|python) [^`]*)`", build._source_text(cell)))
    return sorted(found)


def test_the_notebooks_suggest_few_commands():
    commands = suggested_commands()
    assert 0 < len(commands) <= 5, commands


@pytest.mark.parametrize("command", suggested_commands())
def test_suggested_command_works(command, tmp_path, monkeypatch):
    offline_quick_env(monkeypatch, tmp_path)
    argv = shlex.split(command)
    assert argv[0] == "vgrad-train", f"add a way to run {command!r} to this test"
    # vgrad-train is vgrad.train:main; `python -m vgrad.train` runs the vgrad under test.
    done = subprocess.run([sys.executable, "-m", "vgrad.train", *argv[1:]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
