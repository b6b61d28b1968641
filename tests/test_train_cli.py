"""The training CLI: `python -m vgrad.train` / `vgrad-train`, its network, its output lines and its plot."""
import gzip
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vgrad
import vgrad.train as train

REPO = Path(__file__).resolve().parents[1]
COURSE_SCRIPT = REPO / "experiments" / "train_mlp.py"


def run(args, cwd=REPO, env=None, check=True):
    full_env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(vgrad.__file__))))
    full_env.update(env or {})
    result = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def cli(*args, **kw):
    return run([sys.executable, "-m", "vgrad.train", *args], **kw)


def test_prints_the_course_scripts_lines_then_the_final_accuracy():
    ours = cli("-e", "2", "--seed", "0", "--no-progress").stdout
    course = run([sys.executable, str(COURSE_SCRIPT), "-e", "2", "--seed", "0"]).stdout
    assert ours.startswith(course)
    tail = ours[len(course):].splitlines()
    assert tail[:2] == ["", "## Finished training"]
    assert tail[2].startswith("       accuracy: ") and float(tail[2].split()[-1]) > 0.9


def test_progress_bar_counts_the_batches_of_each_epoch():
    result = cli("-e", "2", "-b", "1000", "--seed", "0")
    batches = -(-60_000 // 1000)
    for epoch in ("epoch 000", "epoch 001"):
        assert f"{epoch}:" in result.stderr and f"/{batches} " in result.stderr
    assert "epoch 000:" not in result.stdout  # the bar stays out of the printed lines


def png_size(path):
    raw = Path(path).read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", raw[16:24])


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "curves.png"
    result = cli("-e", "2", "-b", "500", "--seed", "1", "--no-progress", "--plot", str(target))
    assert f"plot written to {target}" in result.stdout
    assert png_size(target) == (900, 350)  # figsize 9 x 3.5 inches at 100 dpi


def test_history_matches_the_printed_lines(capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)
    np.random.seed(0)
    model = train.Network(2, 2)
    history = train.fit(model, (x[:200], y[:200]), (x[200:], y[200:]), epochs=3, batch_size=50, lr=0.05,
                        progress=False)
    lines = capsys.readouterr().out.splitlines()
    printed_acc = [float(line.split()[-1]) for line in lines if line.startswith("       accuracy:")]
    printed_loss = [float(line.split()[-1]) for line in lines if line.startswith("   running loss:")]
    assert len(history["accuracy"]) == 4 and len(history["loss"]) == 3
    np.testing.assert_allclose(printed_acc, history["accuracy"], rtol=1e-3)
    np.testing.assert_allclose(printed_loss, history["loss"], rtol=1e-3)
    # The final accuracy is the model's, computed here independently.
    out = model(vgrad.TensorNode(x[200:])).value
    assert history["accuracy"][-1] == np.mean(np.argmax(out, axis=1) == y[200:])


# ---------------------------------------------------------------- the network

def numpy_forward(params, x, activation, residual):
    """The network written out in NumPy: hidden layers, optional skips, log-softmax."""
    act = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "relu": lambda v: np.maximum(v, 0)}[activation]
    layers = [(params[i], params[i + 1]) for i in range(0, len(params), 2)]
    h = act(x @ layers[0][0].T + layers[0][1])
    for w, b in layers[1:-1]:
        update = act(h @ w.T + b)
        h = h + update if residual else update
    w, b = layers[-1]
    z = h @ w.T + b
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("activation,depth,residual",
                         [("sigmoid", 1, False), ("relu", 1, False), ("relu", 3, False), ("sigmoid", 3, True),
                          ("relu", 4, True)])
def test_network_computes_what_it_says(rng, activation, depth, residual):
    model = train.Network(3, 4, hidden_mult=2, depth=depth, activation=activation, residual=residual)
    for p in model.parameters():  # nonzero biases, so that they are tested too
        p.value[...] = rng.standard_normal(p.value.shape)
    shapes = [p.value.shape for p in model.parameters()]
    assert shapes == [(6, 3), (1, 6)] + [(6, 6), (1, 6)] * (depth - 1) + [(4, 6), (1, 4)]
    x = rng.standard_normal((5, 3))
    got = model(vgrad.TensorNode(x)).value
    np.testing.assert_allclose(got, numpy_forward([p.value for p in model.parameters()], x, activation, residual),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("np_random_state")
def test_default_network_is_the_course_mlp():
    np.random.seed(5)
    ours = train.Network(2, 2)
    np.random.seed(5)
    course = vgrad.MLP(input_size=2, output_size=2)
    assert len(ours.parameters()) == len(course.parameters()) == 4
    for a, b in zip(ours.parameters(), course.parameters()):
        np.testing.assert_array_equal(a.value, b.value)


def test_network_rejects_bad_settings():
    with pytest.raises(ValueError, match="depth"):
        train.Network(2, 2, depth=0)
    with pytest.raises(ValueError, match="activation"):
        train.Network(2, 2, activation="tanh")


def test_deeper_residual_relu_runs_from_the_command_line():
    out = cli("-e", "1", "-b", "2000", "--depth", "3", "--residual", "--activation", "relu", "--hidden-mult", "2",
              "-l", "0.001", "--seed", "0", "--no-progress").stdout
    final = float(out.splitlines()[-1].split()[-1])
    assert 0.0 <= final <= 1.0 and "running loss: nan" not in out


# ---------------------------------------------------------------- flags and failures

def test_bad_flags_are_refused():
    result = cli("--residual", check=False)
    assert result.returncode == 2 and "--depth 2 or more" in result.stderr
    result = cli("-D", "imagenet", check=False)
    assert result.returncode == 2 and "invalid choice: 'imagenet'" in result.stderr
    result = cli("--activation", "tanh", check=False)
    assert result.returncode == 2 and "invalid choice: 'tanh'" in result.stderr


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"


def test_mnist_offline_says_where_to_put_the_files(tmp_path):
    result = cli("-D", "mnist", cwd=tmp_path, check=False,
                 env={"VGRAD_DATA": str(tmp_path / "data"), "VGRAD_MNIST_URL": closed_port_url()})
    assert result.returncode == 1
    assert str(tmp_path / "data" / "mnist") in result.stderr and "train-images-idx3-ubyte.gz" in result.stderr
    assert "Traceback" not in result.stderr


def idx_gz(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes(), compresslevel=1))


def test_fashion_from_local_files(tmp_path):
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    idx_gz(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (5030, 28, 28), dtype=np.uint8))
    idx_gz(folder / "train-labels-idx1-ubyte.gz", np.repeat(np.arange(10, dtype=np.uint8), 503))
    idx_gz(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (3, 28, 28), dtype=np.uint8))
    idx_gz(folder / "t10k-labels-idx1-ubyte.gz", np.arange(3, dtype=np.uint8))
    out = cli("-D", "fashion", "-e", "1", "-l", "0.0001", "--hidden-mult", "1", "--no-progress", cwd=tmp_path,
              env={"VGRAD_DATA": str(tmp_path / "data")}).stdout
    assert "number of instances: 30 in training, 5000 in validation" in out
    assert "epoch 000" in out and "## Finished training" in out


def test_console_script_entry_point_is_declared():
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["vgrad-train"].split(":")
    assert (module, function) == ("vgrad.train", "main")
    # What the installed script does: exit with main()'s return value.
    result = run([sys.executable, "-c", "import sys, vgrad.train; sys.exit(vgrad.train.main(['--residual']))"],
                 check=False)
    assert result.returncode == 2 and "usage: vgrad-train" in result.stderr


@pytest.mark.skipif(shutil.which("vgrad-train") is None, reason="vgrad-train is not installed (pip install -e .)")
def test_console_script():
    result = run(["vgrad-train", "--help"])
    assert "--activation" in result.stdout and "--plot" in result.stdout and "-D" in result.stdout


def test_cnn_mode_dispatches_to_train_cnn(capsys):
    from vgrad import train
    with pytest.raises(SystemExit) as exit_info:
        train.main(["cnn", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--optimizer" in out and "--batchnorm" in out and "--residual" in out


# ---------------------------------------------------------------- nonsensical flag values

@pytest.mark.parametrize("flags,complaint", [
    (["-l", "nan"], "argument -l/--learning-rate: must be a finite number, got nan"),
    (["-l", "inf"], "argument -l/--learning-rate: must be a finite number, got inf"),
    (["-l", "-0.1"], "argument -l/--learning-rate: must be greater than 0, got -0.1"),
    (["-l", "0"], "argument -l/--learning-rate: must be greater than 0, got 0"),
    (["-l", "fast"], "argument -l/--learning-rate: must be a number, got 'fast'"),
    (["-b", "0"], "argument -b/--batch-size: must be at least 1, got 0"),
    (["-b", "-5"], "argument -b/--batch-size: must be at least 1, got -5"),
    (["-b", "2.5"], "argument -b/--batch-size: must be a whole number, got '2.5'"),
    (["-e", "-1"], "argument -e/--epochs: must be at least 0, got -1"),
    (["--hidden-mult", "0"], "argument --hidden-mult: must be at least 1, got 0"),
    (["--depth", "0"], "argument --depth: must be at least 1, got 0"),
    (["--seed", "-1"], "argument --seed: must be at least 0, got -1"),
    (["--seed", str(2 ** 32)], "argument --seed: must be less than 2**32"),
])
def test_nonsensical_flag_values_are_refused(flags, complaint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(flags)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: vgrad-train" in err and complaint in err


@pytest.mark.parametrize("flags,complaint", [
    (["--lr", "nan"], "argument --lr: must be a finite number, got nan"),
    (["--lr", "0"], "argument --lr: must be greater than 0, got 0"),
    (["--momentum", "-0.5"], "argument --momentum: must lie in [0, 1), got -0.5"),
    (["--momentum", "1"], "argument --momentum: must lie in [0, 1), got 1"),
    (["--momentum", "nan"], "argument --momentum: must be a finite number, got nan"),
    (["--dropout", "1"], "argument --dropout: must lie in [0, 1), got 1"),
    (["--dropout", "-0.1"], "argument --dropout: must lie in [0, 1), got -0.1"),
    (["--epochs", "-1"], "argument --epochs: must be at least 0, got -1"),
    (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["--limit", "0"], "argument --limit: must be at least 1, got 0"),
    (["--seed", "-3"], "argument --seed: must be at least 0, got -3"),
])
def test_nonsensical_cnn_flag_values_are_refused(flags, complaint, capsys):
    with pytest.raises(SystemExit) as exit_info:  # refused before any data is loaded
        train.main(["cnn", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: vgrad-train cnn" in err and complaint in err


def test_nan_learning_rate_is_refused_by_the_command_before_training():
    for args in (["-l", "nan", "-e", "1"], ["cnn", "--lr", "nan", "--limit", "8", "--epochs", "1"]):
        result = cli(*args, check=False)
        assert result.returncode == 2, result.stdout
        assert "must be a finite number, got nan" in result.stderr
        assert "Starting training" not in result.stdout and "Traceback" not in result.stderr


def test_zero_epochs_is_allowed(capsys):
    assert train.main(["-e", "0", "--no-progress"]) == 0
    assert "## Finished training" in capsys.readouterr().out


def test_fit_refuses_nonsensical_settings():
    model = train.Network(2, 2)
    data = (np.zeros((4, 2)), np.zeros(4, dtype=int))
    for kwargs, complaint in [({"lr": float("nan")}, "learning rate"), ({"lr": -1.0}, "learning rate"),
                              ({"batch_size": 0}, "batch_size"), ({"epochs": -1}, "epochs")]:
        settings = dict(epochs=1, batch_size=2, lr=0.1, progress=False, verbose=False) | kwargs
        with pytest.raises(ValueError, match=f"fit: .*{complaint}"):
            train.fit(model, data, data, **settings)
    with pytest.raises(ValueError, match="hidden_mult must be at least 1, got 0"):
        train.Network(2, 2, hidden_mult=0)


def test_mnist_pickle_that_runs_code_is_refused_by_the_command(tmp_path):
    (tmp_path / "mnist.pkl").write_bytes(b"cos\nsystem\n(Vtouch marker\ntR.")  # os.system('touch marker')
    result = cli("-D", "mnist", cwd=tmp_path, check=False,
                 env={"VGRAD_DATA": str(tmp_path / "data"), "VGRAD_MNIST_URL": closed_port_url()})
    assert result.returncode == 1
    assert not (tmp_path / "marker").exists()
    assert "refusing to load os.system" in result.stderr and "Delete" in result.stderr
    assert "Traceback" not in result.stderr
