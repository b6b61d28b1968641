"""vgrad/train_cnn.py (run by experiments/train_cnn.py and `vgrad-train cnn`) on small subsets of Fashion-MNIST: the default model learns, every variant of the
assignment runs, runs are reproducible, and the quick mode (VGRAD_QUICK=1) is what the notebook and CI use.
The full experiment (>= 88% test accuracy) is run by hand, not here."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vgrad
from vgrad import data

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "train_cnn.py"


def _has_fashion_mnist():
    dirs = [data._data_dir("fashion-mnist"), data.SYSTEM_FASHION_DIR]
    return any(all(os.path.isfile(os.path.join(d, f)) for f in data.IDX_FILES.values()) for d in dirs)


pytestmark = pytest.mark.skipif(not _has_fashion_mnist(), reason="Fashion-MNIST is not on this machine")


@pytest.fixture(scope="module")
def train_cnn():
    from vgrad import train_cnn
    return train_cnn


def test_default_model_learns_in_quick_mode(train_cnn, monkeypatch, np_random_state, capsys):
    monkeypatch.setenv("VGRAD_QUICK", "1")
    history = train_cnn.main([])
    out = capsys.readouterr().out
    assert "2000 training and 500 test images (1, 28, 28); adam lr=0.001" in out
    assert len(history["test_acc"]) == 1 and "epoch  1: train accuracy" in out
    # 2000 images, one epoch: far above chance (0.1); about 0.64 on this machine
    assert history["test_acc"][0] > 0.45
    losses = history["losses"]
    assert len(losses) == 32 and np.mean(losses[-5:]) < np.mean(losses[:5])


@pytest.mark.parametrize("flags", [["--conv3"], ["--residual"], ["--batchnorm"], ["--dropout", "0.3"],
                                   ["--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9"],
                                   ["--conv3", "--residual", "--batchnorm", "--dropout", "0.1", "--dtype", "float64"]])
def test_every_variant_runs(train_cnn, flags, np_random_state, tmp_path):
    plot = tmp_path / "loss.png"
    history = train_cnn.main(["--limit", "128", "--epochs", "2", "--batch-size", "32", "--plot", str(plot), *flags])
    assert len(history["train_acc"]) == 2 and all(0 <= a <= 1 for a in history["test_acc"])
    assert np.isfinite(history["losses"]).all() and len(history["losses"]) == 8
    assert plot.stat().st_size > 0


def test_variants_change_the_model(train_cnn, np_random_state):
    plain = train_cnn.CNN(in_channels=1, padding=2)
    full = train_cnn.CNN(in_channels=1, padding=2, conv3=True, residual=True, batchnorm=True, dropout=0.5)
    assert len(plain.parameters()) == 10
    assert len(full.parameters()) == 10 + 2 + 3 * 2  # conv3's weight and bias, gamma and beta of three norms
    assert full.fc1.w.value.shape == (400, 400)


def test_same_seed_same_run(train_cnn, np_random_state):
    args = ["--limit", "128", "--epochs", "1", "--batch-size", "32", "--dropout", "0.2", "--seed", "3"]
    first, second = train_cnn.main(args), train_cnn.main(args)
    assert first["losses"] == second["losses"]


def test_script_runs_from_the_command_line():
    env = dict(os.environ, VGRAD_QUICK="1",
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(vgrad.__file__))))
    result = subprocess.run([sys.executable, str(SCRIPT), "--limit", "200"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "epoch  1: train accuracy" in result.stdout


def test_bad_dropout_is_refused(train_cnn):
    with pytest.raises(SystemExit):
        train_cnn.parse_args(["--dropout", "1.5"])
