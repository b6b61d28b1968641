"""Tests for `python -m vgrad.as_vugrad`: vugrad imports resolve to vgrad, the script runs like `python script.py`."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import vgrad


def run(args, cwd):
    """Runs `python -m vgrad.as_vugrad args...` with the vgrad this test process imported."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(vgrad.__file__))))
    return subprocess.run([sys.executable, "-m", "vgrad.as_vugrad", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def project(tmp_path):
    """A folder with a decoy vugrad/ package that fails loudly if anything imports it."""
    decoy = "raise RuntimeError('the decoy vugrad was imported')\n"
    for name in ("__init__.py", "core.py", "ops.py", "mnist.py", "extra.py"):
        write(tmp_path / "vugrad" / name, decoy)
    write(tmp_path / "core.py", decoy)  # what `import core` would find via the vugrad/ folder trick
    return tmp_path


CONTEXT = """\
    import os, sys
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    sys.path.insert(0, os.path.join(here, "vugrad"))
"""


def test_plain_vugrad_modules_are_vgrads_despite_local_folder(project):
    script = write(project / "script.py", CONTEXT + """\
    import vugrad as vg
    from vugrad.core import Op
    import vugrad.ops, vugrad.functions, vugrad.modules, vugrad.mnist
    import vgrad, vgrad.core, vgrad.ops, vgrad.functions, vgrad.modules, vgrad.data
    print(vg is vgrad, Op is vgrad.core.Op, vg.TensorNode is vgrad.TensorNode)
    print(vugrad.ops is vgrad.ops, vugrad.functions is vgrad.functions, vugrad.modules is vgrad.modules)
    print(vugrad.mnist is vgrad.data, sys.modules["vugrad.core"] is vgrad.core)
    """)
    result = run(["--plain", str(script)], cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"] * 8


def test_without_plain_the_local_package_is_the_one_imported(project):
    """The student's own package runs (tests/test_overlay.py checks how); this decoy fails when it does."""
    script = write(project / "script.py", CONTEXT + "    import vugrad\n")
    result = run([str(script)], cwd=project)
    assert result.returncode == 1
    assert "RuntimeError: the decoy vugrad was imported" in result.stderr


def test_plain_other_vugrad_module_gives_clear_import_error(project):
    script = write(project / "script.py", CONTEXT + """\
    try:
        import vugrad.extra
    except ImportError as e:
        print("ImportError:", e)
    """)
    result = run(["--plain", str(script)], cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError:")
    assert "vugrad.extra" in result.stdout and "vgrad.as_vugrad" in result.stdout


def test_argv_path_name_and_file_are_as_under_python(tmp_path):
    write(tmp_path / "sub" / "helper.py", "VALUE = 42\n")
    script = write(tmp_path / "sub" / "show.py", """\
    import json, sys
    import helper  # found because sys.path[0] is the script's folder
    print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__,
                      "file": __file__, "helper": helper.VALUE}))
    """)
    result = run(["sub/show.py", "-e", "3", "--flag", "a b"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["argv"] == ["sub/show.py", "-e", "3", "--flag", "a b"]
    assert seen["path0"] == os.path.realpath(tmp_path / "sub")
    assert seen["name"] == "__main__"
    assert seen["file"] == str(script.resolve()) or seen["file"] == str(script)
    assert seen["helper"] == 42


@pytest.mark.parametrize("body, code", [
    ("print('fine')", 0),
    ("import sys; sys.exit(3)", 3),
    ("raise SystemExit(0)", 0),
    ("import sys; sys.exit('bye')", 1),
])
def test_exit_code_preserved(tmp_path, body, code):
    write(tmp_path / "s.py", body + "\n")
    result = run(["s.py"], cwd=tmp_path)
    assert result.returncode == code
    if code == 1:
        assert "bye" in result.stderr


def test_uncaught_exception_prints_script_traceback(tmp_path):
    write(tmp_path / "boom.py", """\
    def inner():
        raise ValueError("exploded here")

    inner()
    """)
    result = run(["boom.py"], cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "boom.py\", line 2, in inner" in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: exploded here")
    assert "runpy" not in result.stderr and "as_vugrad.py" not in result.stderr


def test_module_mode(tmp_path):
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "job.py", """\
    import json, sys
    import vugrad, vgrad
    print(json.dumps([sys.argv[1:], __name__, vugrad is vgrad]))
    """)
    result = run(["-m", "pkg.job", "x", "-y"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [["x", "-y"], "__main__", True]


@pytest.mark.parametrize("args", [[], ["missing_script.py"], ["-m"]])
def test_bad_invocation_exits_2_with_message(tmp_path, args):
    result = run(args, cwd=tmp_path)
    assert result.returncode == 2
    assert "usage" in result.stderr or "missing_script.py" in result.stderr
