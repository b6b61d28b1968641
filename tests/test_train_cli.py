"""The training CLI: `python -m vgrad.train` / `vgrad-train`, its network, its output lines and its plot."""
import csv
import json
import gzip
import os
import re
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
ACCURACY = re.compile(r"^       accuracy: (\S+)$", re.M)
LOSS = re.compile(r"^   running loss: (\S+)$", re.M)


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
    result = cli("-e", "2", "-b", "1000", "--seed", "0", "--progress")  # on, although stderr is not a terminal
    batches = -(-60_000 // 1000)
    for epoch in ("epoch 1/2", "epoch 2/2"):
        assert f"{epoch}:" in result.stderr and f"/{batches} " in result.stderr
    assert "epoch 1/2:" not in result.stdout  # the bar stays out of the printed lines


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


def test_no_progress_bar_when_stderr_is_not_a_terminal_or_quiet_but_a_line_per_epoch():
    for flags in ([], ["-q"], ["--quiet"], ["--no-progress"]):
        result = cli("-e", "2", "-b", "1000", "--seed", "0", *flags)
        assert "batch/s" not in result.stderr and "/60 " not in result.stderr, flags
        lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
        assert len(lines) == 2 and lines[0].startswith("epoch 1/2 (") and lines[1].startswith("epoch 2/2 (")
        for line in lines:
            assert "training loss" in line and "validation loss" in line and line.count("accuracy") == 2


def epoch_lines(text):
    pattern = re.compile(r"^epoch (\d+)/(\d+) \(([\d.]+) s\): training loss (\S+), accuracy (\S+) \| "
                         r"validation loss (\S+), accuracy (\S+)$", re.M)
    return [tuple(float(v) for v in match) for match in pattern.findall(text)]


def test_the_per_epoch_line_has_the_epochs_own_time_and_the_course_lines_numbers():
    result = cli("-e", "3", "--seed", "0")
    lines = epoch_lines(result.stderr)
    assert [line[:2] for line in lines] == [(1, 3), (2, 3), (3, 3)]
    losses = [float(v) for v in LOSS.findall(result.stdout)]
    accuracies = [float(v) for v in ACCURACY.findall(result.stdout)]
    np.testing.assert_allclose([line[3] for line in lines], losses, rtol=1e-3)  # the course's running loss
    np.testing.assert_allclose([line[6] for line in lines], accuracies[1:], atol=1e-4)  # validation, after
    assert "validation set" in result.stderr and "never the test set" in result.stderr
    assert "(on the validation set: 10000 instances; 3 epochs" in result.stdout


def test_deeper_residual_relu_runs_from_the_command_line():
    out = cli("-e", "1", "-b", "2000", "--depth", "3", "--residual", "--activation", "relu", "--hidden-mult", "2",
              "-l", "0.001", "--seed", "0", "--no-progress").stdout
    final = float(ACCURACY.findall(out)[-1])
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
    (["-l", "nan"], "argument -l/--learning-rate/--lr: must be a finite number, got nan"),
    (["-l", "inf"], "argument -l/--learning-rate/--lr: must be a finite number, got inf"),
    (["-l", "-0.1"], "argument -l/--learning-rate/--lr: must be greater than 0, got -0.1"),
    (["-l", "0"], "argument -l/--learning-rate/--lr: must be greater than 0, got 0"),
    (["-l", "fast"], "argument -l/--learning-rate/--lr: must be a number, got 'fast'"),
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
    (["--lr", "nan"], "argument -l/--learning-rate/--lr: must be a finite number, got nan"),
    (["-l", "0"], "argument -l/--learning-rate/--lr: must be greater than 0, got 0"),
    (["--momentum", "-0.5"], "argument --momentum: must lie in [0, 1), got -0.5"),
    (["--momentum", "1"], "argument --momentum: must lie in [0, 1), got 1"),
    (["--momentum", "nan"], "argument --momentum: must be a finite number, got nan"),
    (["--dropout", "1"], "argument --dropout: must lie in [0, 1), got 1"),
    (["--dropout", "-0.1"], "argument --dropout: must lie in [0, 1), got -0.1"),
    (["--epochs", "-1"], "argument -e/--epochs: must be at least 0, got -1"),
    (["-b", "0"], "argument -b/--batch-size: must be at least 1, got 0"),
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
    for args in (["-l", "nan", "-e", "1"], ["cnn", "-l", "nan", "--limit", "8", "-e", "1"]):
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


# ---------------------------------------------------------------- image data, defaults, the validation split

def small_fashion(folder, train=5200, test=100, seed=0):
    """A fake Fashion-MNIST of random images in $VGRAD_DATA/fashion-mnist/: the last 5000 training images are
    the validation set."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    idx_gz(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (train, 28, 28), dtype=np.uint8))
    idx_gz(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, train, dtype=np.uint8))
    idx_gz(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (test, 28, 28), dtype=np.uint8))
    idx_gz(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, test, dtype=np.uint8))


@pytest.mark.parametrize("flags,lr,hidden", [
    ([], 0.01, 8),                                  # synth: the course's
    (["-D", "fashion"], 0.01, 256),
    (["-D", "fashion", "--activation", "relu"], 0.001, 256),
    (["-D", "mnist", "--depth", "3", "--residual", "--activation", "relu"], 0.001, 256),
    (["-D", "mnist", "--raw-pixels"], 0.0001, 4 * 784),   # the course's network and learning rate
    (["-D", "fashion", "--hidden-mult", "2"], 0.01, 2 * 784),
    (["-D", "fashion", "-l", "0.05", "--hidden", "100"], 0.05, 100),
])
def test_defaults_per_data_set(flags, lr, hidden, monkeypatch):
    monkeypatch.delenv("VGRAD_QUICK", raising=False)
    args = train.parse_args(flags)
    assert args.lr == lr and args.raw_pixels == ("--raw-pixels" in flags)
    input_size = 2 if not flags else 784
    mult = args.hidden_mult or (4 if args.data == "synth" or args.raw_pixels else None)
    assert (args.hidden or (mult * input_size if mult else train.IMAGE_HIDDEN)) == hidden


def test_pixels_are_scaled_to_one_unless_raw():
    batch = np.array([[0, 51, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(train.input_converter("fashion", False, np.float64)(batch), [[0, 0.2, 1]])
    assert train.input_converter("fashion", False, np.float32)(batch).dtype == np.float32
    assert train.input_converter("mnist", True, np.float64)(batch) is batch  # the course's: computed in float64
    synth = np.array([[0.5, -1.0]])
    assert train.input_converter("synth", False, np.float64)(synth).dtype == np.float64


def test_raw_pixels_are_refused_for_the_synthetic_data_and_explained_in_help():
    result = cli("--raw-pixels", check=False)
    assert result.returncode == 2 and "--raw-pixels is for image data" in result.stderr
    text = " ".join(cli("--help").stdout.split())
    assert "as the course script experiments/train_mlp.py does" in text and "0.0001" in text


def test_fashion_learns_in_quick_mode():
    pytest.importorskip("fake_images").fashion_dir()
    result = cli("-D", "fashion", "--seed", "0", env={"VGRAD_QUICK": "1"})
    assert "number of instances: 5000 in training, 1250 in validation" in result.stdout
    assert "pixels scaled to [0, 1]; MLP 784 -> 256 -> 10, sigmoid; learning rate 0.01" in result.stderr
    accuracies = [float(a) for a in ACCURACY.findall(result.stdout)]
    assert len(accuracies) == 3 and accuracies[-1] > 0.6 > 0.2 > accuracies[0]  # 2 epochs of 5000: about 0.74


def test_raw_pixels_mnist_prints_what_the_course_script_prints(tmp_path):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    idx_gz(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (5300, 28, 28), dtype=np.uint8))
    idx_gz(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 5300, dtype=np.uint8))
    idx_gz(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28), dtype=np.uint8))
    idx_gz(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 10, dtype=np.uint8))
    env = {"VGRAD_DATA": str(tmp_path / "data"), "VGRAD_MNIST_URL": closed_port_url()}
    ours = cli("-D", "mnist", "--raw-pixels", "-e", "2", "--seed", "0", cwd=tmp_path, env=env)
    course = run([sys.executable, str(COURSE_SCRIPT), "-D", "mnist", "-l", "0.0001", "-e", "2", "--seed", "0"],
                 cwd=tmp_path, env=env)
    assert "300 in training, 5000 in validation" in course.stdout and "running loss: nan" not in course.stdout
    assert ours.stdout.startswith(course.stdout)
    assert "raw 0-255 pixels; MLP 784 -> 3136 -> 10, sigmoid; learning rate 0.0001" in ours.stderr


def test_the_test_set_is_read_only_with_test(tmp_path, monkeypatch, capsys):
    small_fashion(tmp_path / "data" / "fashion-mnist")
    monkeypatch.setenv("VGRAD_DATA", str(tmp_path / "data"))
    calls = []
    real = train.load_data
    monkeypatch.setattr(train, "load_data", lambda name, final=False: calls.append(final) or real(name, final))
    assert train.main(["-D", "fashion", "-e", "1", "--hidden", "16", "-q"]) == 0
    out = capsys.readouterr().out
    assert calls == [False] and "test" not in out.lower()
    assert "(on the validation set: 5000 instances held out of the training data; 1 epoch" in out
    assert train.main(["-D", "fashion", "-e", "1", "--hidden", "16", "-q", "--test"]) == 0
    out = capsys.readouterr().out
    assert calls == [False, False, True]
    assert out.index("## Finished training") < out.index("## Test set (100 instances, evaluated once, after "
                                                         "training)") < out.index("  test accuracy: ")


def test_test_is_refused_for_the_synthetic_data():
    result = cli("--test", check=False)
    assert result.returncode == 2 and "the synthetic data has no test set" in result.stderr


# ---------------------------------------------------------------- a loss that blows up

def test_a_loss_that_blows_up_stops_the_run_with_a_clear_message(tmp_path):
    result = cli("--depth", "4", "--residual", "--activation", "relu", "-l", "100", "--seed", "0", "-e", "3",
                 "--plot", "curves.png", "--save", "m.npz", "--log", "run.csv", "--confusion", "cm.png",
                 cwd=tmp_path, check=False)
    assert result.returncode == 3, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert re.search(r"the training loss became (nan|inf|-inf) in epoch 1, batch \d+ of 469, at learning rate 100",
                     message), message
    assert "lower the learning rate (-l 10, say)" in message and "Traceback" not in result.stderr
    assert not (tmp_path / "curves.png").exists() and not (tmp_path / "m.npz").exists()
    assert not (tmp_path / "cm.png").exists() and "Finished training" not in result.stdout
    assert (tmp_path / "run.csv").read_text().splitlines() == [",".join(train.LOG_COLUMNS)]


def test_a_blow_up_in_a_later_epoch_keeps_the_log_of_the_epochs_before(tmp_path, monkeypatch, capsys):
    small_fashion(tmp_path / "data" / "fashion-mnist")  # 200 training images: 2 batches of 100 per epoch
    monkeypatch.setenv("VGRAD_DATA", str(tmp_path / "data"))
    calls = []

    def blowing_up(outputs, targets):  # the real loss, except in the second batch of the second epoch
        loss = logceloss(outputs, targets)
        calls.append(1)
        if len(calls) == 4:
            loss.value = np.array(np.nan)
        return loss

    logceloss = train.logceloss
    monkeypatch.setattr(train, "logceloss", blowing_up)
    log, plot = tmp_path / "run.csv", tmp_path / "p.png"
    code = train.main(["-D", "fashion", "--raw-pixels", "-e", "3", "-b", "100", "--hidden", "8", "-q",
                       "--log", str(log), "--plot", str(plot)])
    err = capsys.readouterr().err
    assert code == 3
    assert "the training loss became nan in epoch 2, batch 2 of 2, at learning rate 0.0001" in err
    assert "--raw-pixels feeds 0-255 pixels" in err and "leave it out to scale them to [0, 1]" in err
    rows = list(csv.DictReader(log.open()))
    assert [row["epoch"] for row in rows] == ["1"] and not plot.exists()


@pytest.mark.usefixtures("np_random_state")
def test_diverged_names_epoch_batch_and_learning_rate():
    error = train.Diverged(float("nan"), 2, 5, 430, 0.01)
    assert str(error) == ("the training loss became nan in epoch 2, batch 5 of 430, at learning rate 0.01: the "
                          "weights have blown up")
    x = np.random.default_rng(0).standard_normal((512, 2)) * 10
    y = (x[:, 0] > 0).astype(int)
    np.random.seed(0)
    model = train.Network(2, 2, depth=4, activation="relu", residual=True)
    with pytest.raises(train.Diverged) as caught:
        with np.errstate(all="ignore"):
            train.fit(model, (x, y), (x, y), epochs=3, batch_size=64, lr=1e4, progress=False, verbose=False)
    assert caught.value.epoch == 1 and 1 <= caught.value.batch <= 8 and caught.value.batches == 8
    assert caught.value.lr == 1e4 and len(caught.value.history["val_acc"]) == 1  # before the first epoch


# ---------------------------------------------------------------- --save, --load, --log, --confusion

def test_save_then_load_rebuilds_the_same_network(tmp_path):
    first = cli("-e", "1", "--seed", "0", "--depth", "2", "--activation", "relu", "--hidden", "6", "--save", "m.npz",
                cwd=tmp_path)
    assert "## network saved to m.npz" in first.stdout
    saved = np.load(tmp_path / "m.npz")
    config = json.loads(str(saved["config"]))
    assert {k: config[k] for k in ("mode", "data", "hidden", "depth", "activation", "residual", "epochs_trained")} \
        == {"mode": "mlp", "data": "synth", "hidden": 6, "depth": 2, "activation": "relu", "residual": False,
            "epochs_trained": 1}
    assert [saved[f"param/{i}"].shape for i in range(6)] == [(6, 2), (1, 6), (6, 6), (1, 6), (2, 6), (1, 2)]

    # -e 0: only evaluate; the architecture comes from the file, the numbers are the same
    again = cli("--load", "m.npz", "-e", "0", cwd=tmp_path)
    assert ACCURACY.findall(again.stdout)[-1] == ACCURACY.findall(first.stdout)[-1]
    assert "MLP 2 -> 6 -> 6 -> 2, relu; loaded from m.npz (trained 1 epoch)" in again.stderr
    assert "## no plot" not in again.stdout

    # continue training: the epochs count on
    more = cli("--load", "m.npz", "-e", "1", "--save", "m2.npz", "--log", "run.csv", cwd=tmp_path)
    assert "before epoch 2:" in more.stderr and "epoch 2/2 (" in more.stderr
    assert json.loads(str(np.load(tmp_path / "m2.npz")["config"]))["epochs_trained"] == 2
    assert [row["epoch"] for row in csv.DictReader((tmp_path / "run.csv").open())] == ["2"]

    # flags that contradict the file are refused; those that agree are fine
    result = cli("--load", "m.npz", "--depth", "3", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "the saved network has --depth 2, not 3" in result.stderr
    result = cli("--load", "m.npz", "--activation", "sigmoid", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "--activation relu, not sigmoid" in result.stderr
    assert cli("--load", "m.npz", "--depth", "2", "-e", "0", cwd=tmp_path).returncode == 0


def test_load_refuses_what_is_not_a_saved_network(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    result = cli("--load", "junk.npz", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "not a network saved by vgrad-train --save" in result.stderr
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    result = cli("--load", "other.npz", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "not a network saved by vgrad-train --save" in result.stderr
    assert "Traceback" not in result.stderr


def test_log_has_a_row_per_epoch_with_the_epochs_own_times(tmp_path):
    cli("-e", "3", "--seed", "0", "--log", "run.csv", cwd=tmp_path)
    rows = list(csv.DictReader((tmp_path / "run.csv").open()))
    assert list(rows[0]) == list(train.LOG_COLUMNS) and [row["epoch"] for row in rows] == ["1", "2", "3"]
    totals = [float(row["total_seconds"]) for row in rows]
    assert totals == sorted(totals)
    for row in rows:
        epoch = float(row["epoch_seconds"])
        assert epoch == pytest.approx(float(row["train_seconds"]) + float(row["val_seconds"]), rel=1e-3, abs=1e-5)
        assert 0 < epoch <= float(row["total_seconds"])
        assert 0 <= float(row["train_accuracy"]) <= 1 and 0 <= float(row["val_accuracy"]) <= 1
    assert float(rows[-1]["val_accuracy"]) > 0.9 and float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_confusion_matrix(tmp_path):
    pytest.importorskip("matplotlib")
    result = cli("-e", "1", "--seed", "0", "--confusion", "cm.png", cwd=tmp_path)
    assert "## confusion matrix on the validation set (10000 instances) written to cm.png" in result.stdout
    png_size(tmp_path / "cm.png")
    counts = train.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3)
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_output_files_that_cannot_be_written_are_refused_before_training(tmp_path):
    pytest.importorskip("matplotlib")
    for flags, complaint in [(["--plot", "nowhere/curves.png"], "does not exist"),
                             (["--save", "nowhere/m.npz"], "does not exist"),
                             (["--confusion", "cm.docx"], "give a file name ending in one of")]:
        result = cli(*flags, cwd=tmp_path, check=False)
        assert result.returncode == 2 and complaint in result.stderr, flags
        assert "Starting training" not in result.stdout


def test_plot_after_zero_epochs_is_not_drawn(tmp_path):
    result = cli("-e", "0", "--plot", "p.png", cwd=tmp_path)
    assert "## no plot: no epochs were trained (-e 0)" in result.stdout and not (tmp_path / "p.png").exists()


# ---------------------------------------------------------------- the flags of both modes

def test_every_flag_has_help():
    from vgrad import train_cnn
    for parser in (train.build_parser(), train_cnn.build_parser("vgrad-train cnn")):
        for action in parser._actions:
            assert action.help and len(action.help) > 15, (parser.prog, action.option_strings)


def test_both_modes_take_the_same_short_flags():
    from vgrad import train_cnn
    mlp, cnn = train.build_parser(), train_cnn.build_parser("vgrad-train cnn")
    for flag in ("-D", "-b", "-e", "-l", "-q", "--lr", "--seed", "--dtype", "--test", "--limit", "--quick", "--save",
                 "--load", "--log", "--plot", "--confusion", "--progress", "--residual"):
        assert flag in mlp._option_string_actions and flag in cnn._option_string_actions, flag
    args = train_cnn.parse_args(["-D", "mnist", "-b", "32", "-e", "2", "-l", "0.01"])
    assert (args.data, args.batch_size, args.epochs, args.lr) == ("mnist", 32, 2, 0.01)


def test_quick_mode_limits_epochs_and_images(monkeypatch):
    monkeypatch.setenv("VGRAD_QUICK", "1")
    args = train.parse_args(["-D", "fashion", "-e", "10"])
    assert (args.epochs, args.limit) == (2, 5000)
    args = train.parse_args(["-e", "10"])
    assert (args.epochs, args.limit) == (2, None)  # the synthetic data is quick as it is
    assert train.parse_args(["-e", "0"]).epochs == 0
