"""Every training command that the README, the notebooks or the commands' own --help suggest is run here, as
written, in quick mode (VGRAD_QUICK=1: at most 2 epochs, the first few thousand images), and must learn: exit
status 0 and a validation accuracy well above chance (or, for --help, a usage text). A suggestion that stops
working, or that stops learning (raw pixels at a learning rate that blows up, say), fails here.

The commands of one file run in order in one folder, so that `--load mlp.npz` finds what an earlier `--save
mlp.npz` wrote. MNIST and CIFAR-10 cannot be downloaded here: $VGRAD_DATA holds stand-ins made of Fashion-MNIST
images (tests/fake_images.py), and every download mirror is a closed port.
"""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import vgrad
import vgrad.data
import vgrad.train
import vgrad.train_cnn
from fake_images import cifar_from_fashion, fashion_dir, mnist_from_fashion

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "notebooks" / "source").glob("*.ipynb")),
           "vgrad/train.py", "vgrad/train_cnn.py"]
PROGRAM = r"(?:[A-Z_]+=\S+ )*(?:vgrad-train|python -m vgrad\.train|python experiments/train_(?:mlp|cnn)\.py)"
IN_BACKTICKS = re.compile(rf"`({PROGRAM}(?: [^`]*)?)`")   # in prose: `vgrad-train -D fashion`
ON_A_LINE = re.compile(rf"^\s+(?:.*&& )?({PROGRAM}(?: [^#]*)?)")  # an indented example, up to a # comment
MARGIN = 0.25  # above chance: the accuracy of always answering the most common class


def texts(source):
    """(prose, examples): the text in which commands are suggested in backquotes, and the indented example
    lines (the README's code blocks, the --help texts' examples). Notebooks suggest commands in markdown."""
    path = REPO / source
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown"], []
    if path.suffix == ".py":
        return [], [vgrad.train.__doc__ if path.name == "train.py" else vgrad.train_cnn.__doc__]
    text = path.read_text()
    return [text], [text]


def commands(source):
    """The commands in the order they appear."""
    prose, examples = texts(source)
    found = []
    for text in prose:
        found += [m.group(1).strip() for m in IN_BACKTICKS.finditer(text)]
    for text in examples:
        for line in text.splitlines():
            match = ON_A_LINE.match(line)
            if match:
                found.append(match.group(1).strip())
    return list(dict.fromkeys(found))


def test_the_commands_are_found():
    readme = commands("README.md")
    assert "python experiments/train_mlp.py -D synth -e 5" in readme and "vgrad-train cnn" in readme
    assert any(c.startswith("vgrad-train --depth 4") for c in commands("notebooks/source/04_deeper_and_residual.ipynb"))
    assert "vgrad-train cnn --help" in commands("notebooks/source/05_cnn.ipynb")
    assert len(commands("vgrad/train.py")) >= 6 and len(commands("vgrad/train_cnn.py")) >= 6
    assert not any("as_vugrad" in c for s in SOURCES for c in commands(s))  # not a training command


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    fashion_dir()  # or skip
    mnist_from_fashion(root)
    cifar_from_fashion(root)
    return root


def argv_of(command):
    words = shlex.split(command)
    env = {}
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    if words[0] == "vgrad-train":  # vgrad.train:main, from the tree under test
        return [sys.executable, "-m", "vgrad.train", *words[1:]], env
    assert words[0] == "python", command
    if words[1] == "-m":
        return [sys.executable, *words[1:]], env
    return [sys.executable, str(REPO / words[1]), *words[2:]], env


def final_accuracies(out):
    """(validation accuracy, chance, test accuracy or None) as the output states them."""
    counts = re.search(r"val\. class distribution: \[([\d ]+)\]", out)
    chance = 0.1
    if counts:
        numbers = [int(n) for n in counts.group(1).split()]
        chance = max(numbers) / sum(numbers)
    cnn = re.search(r"^## finished: validation accuracy (\S+)", out, re.M)
    if cnn:
        val = float(cnn.group(1))
    else:
        val = float(re.findall(r"^\s+accuracy: (\S+)$", out, re.M)[-1])
    test = re.search(r"test accuracy:? (\d\S*)", out)
    return val, chance, float(test.group(1)) if test else None


@pytest.mark.parametrize("source", [source for source in SOURCES if commands(source)])
def test_suggested_commands_run_and_learn(source, data_dir, tmp_path):
    found = commands(source)
    env = dict(os.environ, VGRAD_QUICK="1", VGRAD_DATA=str(data_dir), MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(Path(vgrad.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    for variable, _ in vgrad.data.MIRRORS.values():
        env[variable] = "http://127.0.0.1:9/"  # the discard port: nothing listens, no download
    for command in found:
        argv, extra = argv_of(command)
        done = subprocess.run(argv, cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True, timeout=900)
        context = f"{source}: {command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert done.returncode == 0, context
        if "--help" in argv or "-h" in argv:
            assert "usage:" in done.stdout, context
            continue
        val, chance, test = final_accuracies(done.stdout)
        assert val > chance + MARGIN, context
        if "--test" in argv:
            assert test is not None and test > chance + MARGIN, context
        for flag in ("--plot", "--confusion", "--save", "--log"):
            if flag in argv:
                written = tmp_path / argv[argv.index(flag) + 1]
                assert written.is_file() and written.stat().st_size > 0, context
