"""
vgrad-train: train an MLP with plain minibatch gradient descent, as the course's experiment does.

    vgrad-train                                  # the synthetic data, 20 epochs (runs with no downloads)
    vgrad-train -D fashion -e 3                  # Fashion-MNIST, pixels scaled to [0, 1]: about 0.85 after 3
    vgrad-train -D fashion --activation relu --depth 3 --residual --plot curves.png
    vgrad-train -D fashion -e 5 --save mlp.npz --log run.csv
    vgrad-train --load mlp.npz -e 0 --test --confusion confusion.png   # evaluate it, once, on the test set
    vgrad-train -D mnist --raw-pixels -e 2       # the course script's MNIST run: 0-255 pixels, lr 0.0001
    python -m vgrad.train --help                 # the same program
    vgrad-train cnn -e 3                         # the CNN of questions 11-12: see vgrad/train_cnn.py

What it prints on stdout is what the course script experiments/train_mlp.py prints: the validation accuracy
before each epoch and the mean training loss over it; then the accuracy after the last epoch and which set
it was measured on. With the default flags on the synthetic data and the same --seed, the lines are the
course script's, number for number. On stderr, a progress bar counts the batches of each epoch (on a terminal;
--quiet turns it off), and one line per epoch gives its time, the training loss and accuracy (averaged over
the epoch, while the weights change) and the validation loss and accuracy after it.

Image data (mnist, fashion, cifar10) is scaled to [0, 1]; --raw-pixels feeds the 0-255 pixels as the course
script does, which needs a learning rate about 100 times smaller. Accuracies are on the validation set (part of
the training data held out by the loader), never on the test set: --test evaluates the test set once, at the
end, for the report. --plot draws the losses and accuracies per epoch, --log writes them to a CSV file,
--confusion draws a confusion matrix, --save and --load keep a trained network in a .npz file.

The functions here (Network, fit, plot_history) are also what the notebooks use; train_cnn.py shares the
rest (flag types, progress bars, the per-epoch line, the log, the plots, saving and loading).
"""
import csv
import json
import math
import numbers
import os
import sys
import time
from argparse import SUPPRESS, ArgumentParser, ArgumentTypeError, BooleanOptionalAction, RawDescriptionHelpFormatter

import numpy as np

from . import data
from .core import Module, TensorNode, no_grad
from .functions import logceloss, logsoftmax, relu, sigmoid
from .modules import Linear

DATASETS = ("synth", "mnist", "fashion", "cifar10")
IMAGE_DATASETS = ("mnist", "fashion", "cifar10")
ACTIVATIONS = {"sigmoid": sigmoid, "relu": relu}
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}

# The defaults for image data (the hidden size, the learning rates) were measured on Fashion-MNIST: EPILOG below
# (the end of vgrad-train --help) gives the figures and the reasons.
IMAGE_HIDDEN = 256
DEFAULT_LR = {"synth": 0.01, "sigmoid": 0.01, "relu": 0.001, "raw": 0.0001}
QUICK_LIMIT, QUICK_EPOCHS = 5000, 2  # VGRAD_QUICK=1 / --quick: a smoke test that still learns

EXIT_DATA, EXIT_USAGE, EXIT_DIVERGED = 1, 2, 3


class Network(Module):
    """
    The course's MLP, and its deeper and residual variants (question 10):

        input -> Linear -> act -> [Linear -> act] x (depth - 1) -> Linear -> logsoftmax

    With residual=True each of the extra hidden layers adds its input to its output, h <- h + act(W h + b), so
    the signal (and the gradient) can skip it. depth=1 with the sigmoid is the course script's MLP, with its
    weights drawn from np.random in the same order. Each hidden layer has hidden_size units, by default
    hidden_mult times the input size (the course's 4).
    """

    def __init__(self, input_size, output_size, hidden_mult=4, depth=1, activation="sigmoid", residual=False,
                 hidden_size=None):
        super().__init__()
        if depth < 1:
            raise ValueError(f"Network: depth must be at least 1 (one hidden layer), got {depth}")
        if hidden_mult < 1:
            raise ValueError(f"Network: hidden_mult must be at least 1, got {hidden_mult}")
        if hidden_size is not None and hidden_size < 1:
            raise ValueError(f"Network: hidden_size must be at least 1, got {hidden_size}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"Network: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        hidden_size = hidden_mult * input_size if hidden_size is None else hidden_size
        self.activation = activation
        self.residual = residual
        self.layers = [Linear(input_size, hidden_size)]
        self.layers += [Linear(hidden_size, hidden_size) for _ in range(depth - 1)]
        self.layers.append(Linear(hidden_size, output_size))

    def forward(self, input):
        act = ACTIVATIONS[self.activation]
        hidden = act(self.layers[0](input))
        for layer in self.layers[1:-1]:
            update = act(layer(hidden))
            hidden = hidden + update if self.residual else update
        return logsoftmax(self.layers[-1](hidden))

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]


# ---------------------------------------------------------------- data

def load_data(name, final=False):
    """The course's data: (xtrain, ytrain), (xval, yval), num_classes, as the loaders give it (uint8 pixels for
    the image data, images flattened). final=True gives the whole training set and the test set instead."""
    if name == "synth":
        if final:
            raise ValueError("the synthetic data has no test set")
        return data.load_synth()
    if name == "mnist":
        return data.load_mnist(final=final, flatten=True)
    if name == "fashion":
        return data.load_fashion_mnist(final=final, flatten=True)
    if name == "cifar10":
        return data.load_cifar10(final=final, flatten=True)
    raise ValueError(f"Dataset {name} not recognized: use one of {', '.join(DATASETS)}")


def limited(limit, train, val):
    """The first `limit` training instances and the first limit // 4 (at least one) validation instances."""
    if limit is None:
        return train, val
    keep = max(limit // 4, 1)
    return (train[0][:limit], train[1][:limit]), (val[0][:keep], val[1][:keep])


def input_converter(dataset, raw_pixels, dtype):
    """A function from a batch as stored (uint8 pixels, or the synthetic data's floats) to the network's input:
    pixels divided by 255 unless raw_pixels; cast to dtype unless they are the course's raw uint8 pixels in
    float64 (which the ops compute in float64 as they are, as vugrad does)."""
    dtype = np.dtype(dtype)
    if dataset in IMAGE_DATASETS and not raw_pixels:
        return lambda batch: np.divide(batch, 255, dtype=dtype)
    if dtype == np.float64 and dataset in IMAGE_DATASETS:
        return lambda batch: batch
    return lambda batch: np.asarray(batch, dtype=dtype)


# ---------------------------------------------------------------- training

class Diverged(FloatingPointError):
    """The training loss became nan or infinite: the weights have blown up (learning rate too high, or raw
    pixels). Carries where it happened, and the history up to the last complete epoch."""

    def __init__(self, value, epoch, batch, batches, lr, history=None):
        self.value, self.epoch, self.batch, self.batches, self.lr = value, epoch, batch, batches, lr
        self.history = history
        super().__init__(f"the training loss became {value} in epoch {epoch}, batch {batch} of {batches}, at "
                         f"learning rate {lr:g}: the weights have blown up")


def not_learning(val_acc, yval, epochs):
    """A warning if, after training, the validation accuracy is no better than always answering the most
    common class: the numbers would otherwise look like a result."""
    if not epochs or not len(yval):
        return None
    chance = np.bincount(np.asarray(yval, dtype=np.intp)).max() / len(yval)
    if val_acc > chance + 0.02:
        return None
    return (f"warning: the validation accuracy {val_acc:.4f} is no better than always answering the most common "
            f"class ({chance:.4f}): the network has not learned")


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def check_finite(loss, epoch, batch, batches, lr):
    if not math.isfinite(loss):
        raise Diverged(loss, epoch, batch, batches, lr)


def accuracy(model, x, y):
    """The fraction of rows of x whose highest output is the class in y."""
    return evaluate(model, x, y)[1]


def evaluate(model, x, y, batch_size=1000, convert=None):
    """The mean loss per instance (the course's summed log-loss over the instances, divided by their number:
    the model's outputs are log-probabilities, as the course's MLP gives them), the accuracy and the predicted
    classes of the model on (x, y), in batches of batch_size, without building graphs."""
    convert = convert or (lambda batch: batch)
    predictions = np.empty(len(y), dtype=np.int64)
    total = 0.0
    with no_grad():
        for fr in range(0, len(y), batch_size):
            out = model(TensorNode(convert(x[fr:fr + batch_size]), requires_grad=False)).value
            target = np.asarray(y[fr:fr + batch_size], dtype=np.intp)
            total -= float(out[np.arange(len(target)), target].sum())
            predictions[fr:fr + batch_size] = np.argmax(out, axis=1)
    n = max(len(y), 1)
    return total / n, float((predictions == y).sum() / n) if len(y) else float("nan"), predictions


def train_epoch(model, x, y, batch_size, lr, progress=None, convert=None, epoch=None, batch_losses=None):
    """
    One pass of gradient descent over (x, y) in order, as the course script does; returns the summed loss
    (and, if batch_losses is a list, appends each batch's mean loss to it). `progress` is a tqdm bar.
    With `epoch` given (a number, for the message), a non-finite loss raises Diverged.
    """
    return _train_epoch(model, x, y, batch_size, lr, progress, convert, epoch, batch_losses)[0]


def _train_epoch(model, x, y, batch_size, lr, progress=None, convert=None, epoch=None, batch_losses=None):
    """train_epoch, also returning the number of training instances classified correctly on the way."""
    convert = convert or (lambda batch: batch)
    total, correct = 0.0, 0
    batches = -(-x.shape[0] // batch_size)
    for i, fr in enumerate(range(0, x.shape[0], batch_size)):
        to = min(fr + batch_size, x.shape[0])
        # requires_grad=False: nothing needs the input batch's gradient, so Linear skips computing it
        outputs = model(TensorNode(convert(x[fr:to]), requires_grad=False))
        loss = logceloss(outputs, y[fr:to])

        value = float(loss.value)
        total += loss.value  # the raw value: summing TensorNodes would keep every graph alive
        if epoch is not None:
            check_finite(value, epoch, i + 1, batches, lr)
        correct += int((np.argmax(outputs.value, axis=1) == y[fr:to]).sum())
        if batch_losses is not None:
            batch_losses.append(value / (to - fr))
        loss.backward()
        for parm in model.parameters():
            parm.value -= lr * parm.grad

        loss.zero_grad()
        loss.clear()
        if progress is not None:
            progress.update(1)
    return total, correct


def fit(model, train, val, epochs, batch_size=128, lr=0.01, progress=True, verbose=True, report=None,
        convert=None, on_epoch=None, first_epoch=1):
    """
    Train `model` on train = (x, y) with plain minibatch gradient descent, evaluating on val = (x, y).

    :param progress: show a tqdm progress bar on stderr for each epoch.
    :param verbose: print the course script's lines for each epoch.
    :param report: if given, called with a line for the start and for each epoch (time, training and
        validation loss and accuracy); vgrad-train prints it to stderr.
    :param convert: a function from a batch of x as stored to the network's input (see input_converter).
    :param on_epoch: if given, called with a dict of each epoch's numbers (see epoch_record).
    :param first_epoch: the number of the first epoch trained here (more than 1 when training continues).

    :return: a history dict: 'accuracy' holds the validation accuracy before each epoch and after the last
        (epochs + 1 values), 'loss' the mean training loss over each epoch (epochs values); also 'val_acc' (the
        same list as 'accuracy'), 'val_loss' (epochs + 1 values), 'train_loss' (the same as 'loss'), 'train_acc'
        (the accuracy on the training batches, averaged over each epoch), 'losses' (each batch's mean loss),
        'epoch_seconds' (training and validation time of each epoch) and 'seconds' (the total).

    A non-finite training loss raises Diverged, which holds the history of the epochs completed.
    """
    if isinstance(lr, bool) or not (isinstance(lr, numbers.Real) and math.isfinite(lr) and lr >= 0):
        raise ValueError(f"fit: the learning rate must be a finite number >= 0, got {lr!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"fit: batch_size must be an int of at least 1, got {batch_size!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"fit: epochs must be an int of at least 0, got {epochs!r}")
    xtrain, ytrain = train
    xval, yval = val

    def say(line):
        if verbose:
            print(line, flush=True)

    history = new_history()
    history["accuracy"], history["loss"] = history["val_acc"], history["train_loss"]  # the course's names
    start = time.perf_counter()
    val_loss, val_acc, _ = evaluate(model, xval, yval, convert=convert)
    history["val_loss"].append(val_loss)
    history["val_acc"].append(val_acc)
    if report:
        report(epoch_line(first_epoch - 1, first_epoch - 1 + epochs, None, None, None, val_loss, val_acc))
    batches = -(-xtrain.shape[0] // batch_size)
    for k in range(epochs):
        epoch = first_epoch + k
        say(f"epoch {k:03}")
        say(f"       accuracy: {history['val_acc'][-1]:.4}")

        began = time.perf_counter()
        with progress_bar(batches, f"epoch {epoch}/{first_epoch - 1 + epochs}", progress) as bar:
            try:
                cl, correct = _train_epoch(model, xtrain, ytrain, batch_size, lr, progress=bar, convert=convert,
                                           epoch=epoch, batch_losses=history["losses"])
            except Diverged as e:
                e.history = history
                raise
        trained = time.perf_counter()
        say(f"   running loss: {cl / xtrain.shape[0]:.4}")
        val_loss, val_acc, _ = evaluate(model, xval, yval, convert=convert)
        now = time.perf_counter()
        record = epoch_record(epoch, trained - began, now - trained, now - start, float(cl / xtrain.shape[0]),
                              correct / xtrain.shape[0], val_loss, val_acc)
        add_record(history, record)
        if report:
            report(epoch_line(epoch, first_epoch - 1 + epochs, record["epoch_seconds"], record["train_loss"],
                              record["train_accuracy"], val_loss, val_acc))
        if on_epoch:
            on_epoch(record)

    say("\n## Finished training")
    say(f"       accuracy: {history['val_acc'][-1]:.4}")
    history["seconds"] = time.perf_counter() - start
    return history


# ---------------------------------------------------------------- what both modes report

def new_history():
    return {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [], "losses": [], "epoch_seconds": []}


def epoch_record(epoch, train_seconds, val_seconds, total_seconds, train_loss, train_acc, val_loss, val_acc):
    """One epoch's numbers: a row of the --log file."""
    return {"epoch": epoch, "epoch_seconds": train_seconds + val_seconds, "train_seconds": train_seconds,
            "val_seconds": val_seconds, "total_seconds": total_seconds, "train_loss": train_loss,
            "train_accuracy": train_acc, "val_loss": val_loss, "val_accuracy": val_acc}


LOG_COLUMNS = tuple(epoch_record(*[0] * 8))


def add_record(history, record):
    history["train_loss"].append(record["train_loss"])
    history["train_acc"].append(record["train_accuracy"])
    history["val_loss"].append(record["val_loss"])
    history["val_acc"].append(record["val_accuracy"])
    history["epoch_seconds"].append(record["epoch_seconds"])


def epoch_line(epoch, epochs, seconds, train_loss, train_acc, val_loss, val_acc):
    """The line printed after each epoch (and, with seconds None, for the starting point)."""
    if seconds is None:
        return f"before epoch {epoch + 1}: validation loss {val_loss:.4f}, accuracy {val_acc:.4f}"
    return (f"epoch {epoch}/{epochs} ({seconds:.1f} s): training loss {train_loss:.4f}, accuracy {train_acc:.4f} | "
            f"validation loss {val_loss:.4f}, accuracy {val_acc:.4f}")


EPOCH_LINE_LEGEND = ("training: averaged over the epoch's batches, while the weights change; validation: after "
                     "the epoch")


def progress_bar(total, desc, enabled):
    """A tqdm bar on stderr for one epoch, removed when it ends (the per-epoch line stays)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="batch", leave=False, file=sys.stderr, disable=not enabled)


def show_progress(flag):
    """--progress / --no-progress / --quiet, or by default: on when stderr is a terminal."""
    if flag is None:
        return sys.stderr.isatty()
    return flag


class CsvLog:
    """--log FILE.csv: a header, then one row per epoch, flushed as it is written (a run that stops early
    keeps its rows). Opened before training, so that an unwritable path fails at once."""

    def __init__(self, path):
        self.file = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=LOG_COLUMNS)
        self.writer.writeheader()
        self.file.flush()

    def write(self, record):
        self.writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value)
                              for key, value in record.items()})
        self.file.flush()

    def close(self):
        self.file.close()


def _figure(size):
    try:
        from matplotlib.figure import Figure  # no pyplot: leaves the caller's matplotlib backend alone
    except ImportError:
        raise ImportError("plots need matplotlib: pip install matplotlib") from None
    return Figure(figsize=size, layout="constrained")


def plot_history(history, path, title=None, batches_per_epoch=None):
    """
    Draw the losses and accuracies per epoch (as fit and train_cnn.main return them) side by side into an
    image file: the training loss and accuracy (averaged over each epoch, drawn at its end) and the validation
    loss and accuracy (after each epoch, and before the first). With batches_per_epoch, each batch's loss too.
    A history of the course's two lists ('loss' and 'accuracy') works as well.
    """
    from matplotlib.ticker import MaxNLocator

    train_loss = history.get("train_loss", history.get("loss"))
    val_acc = history.get("val_acc", history.get("accuracy"))
    epochs = len(train_loss)
    first = len(val_acc) - epochs  # 1 if the validation numbers include the starting point

    figure = _figure((9, 3.5))
    left, right = figure.subplots(1, 2)
    losses = history.get("losses")
    if batches_per_epoch and losses:
        left.plot(np.arange(1, len(losses) + 1) / batches_per_epoch, losses, lw=0.5, alpha=0.3,
                  color="tab:blue", label="training, each batch")
    left.plot(range(1, epochs + 1), train_loss, marker="o", color="tab:blue", label="training (epoch mean)")
    if history.get("val_loss"):
        left.plot(range(1 - first, epochs + 1), history["val_loss"], marker="o", color="tab:green",
                  label="validation")
    left.set(xlabel="epoch", ylabel="mean loss per instance", title="loss")
    if history.get("train_acc"):
        right.plot(range(1, epochs + 1), history["train_acc"], marker="o", color="tab:blue",
                   label="training (during the epoch)")
    right.plot(range(1 - first, epochs + 1), val_acc, marker="o", color="tab:green", label="validation")
    right.set(xlabel="epochs trained", ylabel="accuracy", title="accuracy")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=100)


def confusion_matrix(labels, predictions, num_classes):
    """counts[i, j]: how many instances of class i were predicted as class j."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels, dtype=np.intp), np.asarray(predictions, dtype=np.intp)), 1)
    return counts


def plot_confusion(counts, path, names, title):
    """--confusion FILE.png: the confusion matrix, each cell's count written in it, rows the true classes."""
    n = len(counts)
    figure = _figure((1.2 + 0.55 * n, 0.9 + 0.5 * n))
    axes = figure.subplots()
    axes.imshow(counts, cmap="Blues")
    threshold = counts.max() / 2 if counts.size else 0
    for i in range(n):
        for j in range(n):
            axes.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                      color="white" if counts[i, j] > threshold else "black")
    axes.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(n), names, fontsize=8)
    axes.set(xlabel="predicted class", ylabel="true class", title=title)
    figure.savefig(path, dpi=100)


# ---------------------------------------------------------------- saving and loading a network

MODEL_FORMAT = 1


def save_model(path, model, config, optimizer=None):
    """
    --save: the network in one .npz file: its parameters ('param/0', ... in parameters() order), the float
    arrays its modules keep (batch norm's running statistics: 'buffer/<module>/<name>'), the optimizer's state
    if any ('optimizer/<parameter>/<name>') and, as JSON in 'config', what rebuilds the same network.
    Written to a temporary file first, then moved into place.
    """
    arrays = {"config": np.array(json.dumps({"format": MODEL_FORMAT, **config}))}
    for i, p in enumerate(model.parameters()):
        arrays[f"param/{i}"] = p.value
    for m, module in enumerate(model.modules()):
        for name, value in vars(module).items():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                arrays[f"buffer/{m}/{name}"] = value
    if optimizer is not None:
        for index, state in optimizer.state_dict()["state"].items():
            for name, value in state.items():
                arrays[f"optimizer/{index}/{name}"] = np.asarray(value)
    path = os.fspath(path)
    partial = path + ".part"
    with open(partial, "wb") as f:
        np.savez(f, **arrays)
    os.replace(partial, path)


def read_model(path):
    """The config dict and the arrays of a file that save_model wrote (ValueError if it is not one)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
        config = json.loads(str(arrays.pop("config")))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a network saved by vgrad-train --save ({type(e).__name__}: {e})") from None
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a network saved by vgrad-train --save (format {config.get('format')!r})")
    return config, arrays


def restore_model(path, model, arrays, optimizer=None):
    """Put the saved arrays into a model built from the saved config (and the optimizer's state into a fresh
    optimizer of the same kind, if both have it)."""
    params = model.parameters()
    saved = [key for key in arrays if key.startswith("param/")]
    if len(saved) != len(params):
        raise ValueError(f"{path}: holds {len(saved)} parameters, the network it describes has {len(params)}")
    for i, p in enumerate(params):
        value = arrays[f"param/{i}"]
        if value.shape != p.value.shape:
            raise ValueError(f"{path}: parameter {i} has shape {value.shape}, the network needs {p.value.shape}")
        p.value = value.astype(p.value.dtype)
        p.grad = None
    for m, module in enumerate(model.modules()):
        for name, value in list(vars(module).items()):
            key = f"buffer/{m}/{name}"
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and key in arrays:
                setattr(module, name, arrays[key].astype(value.dtype))
    if optimizer is not None:
        state = {}
        for key, value in arrays.items():
            if key.startswith("optimizer/"):
                _, index, name = key.split("/")
                state.setdefault(int(index), {})[name] = int(value) if name == "step" else value
        if state:
            optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def apply_saved_config(parser, args, config, keys):
    """--load: take the architecture (the flags in `keys`) from the file. A flag given on the command line
    that disagrees with the file is an error; one left out takes the file's value."""
    for key in keys:
        saved, given = config.get(key), getattr(args, key)
        if given is not None and given != saved:
            flag = "--" + key.replace("_", "-")
            parser.error(f"--load {args.load}: the saved network has {flag} {_show(saved)}, not {_show(given)}; "
                         f"leave {flag} out (the file decides), or train a new network without --load")
        setattr(args, key, saved)


def _show(value):
    return {True: "on", False: "off", None: "unset"}.get(value, value) if isinstance(value, (bool, type(None))) \
        else value


# ---- flag types: nonsensical values are refused by argparse (exit status 2, naming the flag) before any data is
# loaded, rather than trained on: `-l nan` would otherwise train NaN weights and exit 0. train_cnn.py uses them too.

def positive_int(text):
    """An int >= 1 (a batch size, a depth)."""
    return _int_at_least(text, 1)


def nonnegative_int(text):
    """An int >= 0 (a number of epochs)."""
    return _int_at_least(text, 0)


def random_seed(text):
    """A seed for np.random.seed: an int in [0, 2**32)."""
    value = _int_at_least(text, 0)
    if value >= 2 ** 32:
        raise ArgumentTypeError(f"must be less than 2**32 (np.random.seed's range), got {text}")
    return value


def positive_float(text):
    """A finite float > 0 (a learning rate)."""
    value = _finite_float(text)
    if not value > 0:
        raise ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def fraction(text):
    """A finite float in [0, 1) (a momentum, a dropout probability)."""
    value = _finite_float(text)
    if not 0 <= value < 1:
        raise ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def _int_at_least(text, least):
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < least:
        raise ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def check_output_paths(parser, args):
    """Refuse, before any training, output files that could not be written: a missing folder, or a picture in
    a format matplotlib does not write."""
    for flag in ("save", "log", "plot", "confusion"):
        path = getattr(args, flag)
        if path is None:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            parser.error(f"--{flag} {path}: the folder {folder} does not exist")
        if flag in ("plot", "confusion"):
            try:
                from matplotlib.backend_bases import FigureCanvasBase
            except ImportError:
                parser.error(f"--{flag} draws with matplotlib, which is not installed: pip install matplotlib")
            extension = os.path.splitext(path)[1].lstrip(".").lower()
            formats = FigureCanvasBase.get_supported_filetypes()
            if extension not in formats:
                parser.error(f"--{flag} {path}: give a file name ending in one of "
                             f"{', '.join('.' + f for f in sorted(formats))}")


def quick_mode(args):
    """--quick or VGRAD_QUICK=1."""
    return args.quick or os.environ.get("VGRAD_QUICK") == "1"


def add_common_arguments(parser, *, datasets, default_dataset, dataset_help, batch_size, epochs, lr_help,
                         dtype_default, quick, seed_default=None):
    """The flags both modes share, with the same short names: -D -b -e -l, and the rest."""
    parser.add_argument("-D", "--dataset", dest="data", default=None, choices=datasets,
                        help=dataset_help + f" (default {default_dataset}; with --load, the saved network's).")
    parser.add_argument("-b", "--batch-size", dest="batch_size", default=batch_size, type=positive_int,
                        help=f"The batch size: instances per gradient step (default {batch_size}).")
    parser.add_argument("-e", "--epochs", dest="epochs", default=epochs, type=nonnegative_int,
                        help=f"The number of epochs: complete passes over the training data (default {epochs}). "
                             "0 only evaluates (with --load, a saved network).")
    parser.add_argument("-l", "--learning-rate", "--lr", dest="lr", default=None, type=positive_float,
                        help=lr_help)
    parser.add_argument("--seed", default=seed_default, type=random_seed,
                        help="Seed np.random with this first: it fixes the initial weights (and the synthetic "
                             "data, the CNN's shuffling and dropout). Default: " +
                             ("none (a different run each time)." if seed_default is None else f"{seed_default}."))
    parser.add_argument("--dtype", default=None, choices=("float64", "float32"),
                        help=f"The floating-point type of the weights and the computation (default "
                             f"{dtype_default}; float32 is about twice as fast).")
    parser.add_argument("--test", action="store_true",
                        help="After training, evaluate once on the test set and print its accuracy (for the report). "
                             "Without it the test set is never read: every other accuracy printed is on the "
                             "training or the validation set, which is what to choose settings by.")
    parser.add_argument("--limit", default=None, type=positive_int, metavar="N",
                        help="Use only the first N training instances (and the first N // 4 validation and test "
                             "instances): a quick look.")
    parser.add_argument("--quick", action="store_true",
                        help=f"A smoke test: {quick}. Also with the environment variable VGRAD_QUICK=1 (the tests "
                             "and the notebooks' quick mode).")
    parser.add_argument("--save", metavar="FILE.npz", default=None,
                        help="After training, save the network (its weights and the flags that define it) to this "
                             "file.")
    parser.add_argument("--load", metavar="FILE.npz", default=None,
                        help="Start from a network saved with --save: the same architecture, its weights, and its "
                             "data set and --seed unless given; then train -e more epochs (-e 0: only evaluate).")
    parser.add_argument("--log", metavar="FILE.csv", default=None,
                        help="Write one row per epoch to this CSV file: " + ", ".join(LOG_COLUMNS) +
                             " (seconds per epoch, not cumulative, except total_seconds).")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="Draw the training and validation loss and accuracy per epoch into this image file.")
    parser.add_argument("--confusion", metavar="FILE.png", default=None,
                        help="Draw the confusion matrix of the final network into this image file: on the "
                             "validation set, or on the test set with --test.")
    parser.add_argument("--progress", default=None, action=BooleanOptionalAction,
                        help="Show a progress bar per epoch on stderr (default: when stderr is a terminal). The "
                             "per-epoch line is printed either way.")
    parser.add_argument("-q", "--quiet", dest="progress", action="store_false", default=SUPPRESS,
                        help="No progress bars (the same as --no-progress).")


def build_parser():
    """The MLP mode's argument parser."""
    parser = ArgumentParser(prog="vgrad-train", description=__doc__.strip().split("\n\n")[0].split(": ", 1)[1],
                            formatter_class=RawDescriptionHelpFormatter, epilog=EPILOG)
    add_common_arguments(
        parser, datasets=DATASETS, default_dataset="synth", batch_size=128, epochs=20, dtype_default="float64",
        dataset_help="Which data to train on: synth (the course's synthetic data, no download), mnist, fashion "
                     "(Fashion-MNIST) or cifar10 (images flattened); pixels are scaled to [0, 1]",
        lr_help=f"The learning rate: the size of the gradient descent steps, on the course's loss summed over each "
                f"batch. Default: {DEFAULT_LR['synth']} on synth (the course's); on image data "
                f"{DEFAULT_LR['sigmoid']} with the sigmoid and {DEFAULT_LR['relu']} with relu (measured on "
                f"Fashion-MNIST: see the list below); {DEFAULT_LR['raw']} with --raw-pixels, as the course suggests "
                f"for MNIST.",
        quick=f"at most {QUICK_EPOCHS} epochs, and only the first {QUICK_LIMIT} training images of image data")
    parser.add_argument("--raw-pixels", dest="raw_pixels", action="store_true", default=None,
                        help="Feed the raw 0-255 pixels, as the course script experiments/train_mlp.py does, instead "
                             "of scaling them to [0, 1]. Inputs 255 times larger make the first layer's outputs "
                             "and gradients as much larger: the default learning rate becomes the course's 0.0001 "
                             "(at 0.01 it does not learn), and the default network the course's (--hidden-mult 4).")
    parser.add_argument("--activation", default=None, choices=tuple(ACTIVATIONS),
                        help="The non-linearity of the hidden layers (default sigmoid, the course's).")
    parser.add_argument("--hidden", dest="hidden", default=None, type=positive_int, metavar="N",
                        help=f"The number of units in each hidden layer. Default: 4 times the input size on synth "
                             f"and with --raw-pixels (the course's hidden_mult=4); {IMAGE_HIDDEN} on image data, "
                             f"where the course's 4 x 784 = 3136 do 12 times the arithmetic per epoch for no "
                             f"better accuracy (see below).")
    parser.add_argument("--hidden-mult", dest="hidden_mult", default=None, type=positive_int, metavar="M",
                        help="Instead of --hidden: each hidden layer this many times bigger than the input "
                             "(--hidden-mult 4 is the course's network).")
    parser.add_argument("--depth", default=None, type=positive_int,
                        help="The number of hidden layers (default 1, the course's).")
    parser.add_argument("--residual", action="store_true", default=None,
                        help="Add a skip connection around each hidden layer after the first (needs --depth 2+).")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_output_paths(parser, args)
    if args.hidden is not None and args.hidden_mult is not None:
        parser.error("give --hidden (units per hidden layer) or --hidden-mult (times the input size), not both")

    if args.load:
        try:
            config, args.saved = read_model(args.load)
        except ValueError as e:
            parser.error(str(e))
        if config.get("mode") != "mlp":
            parser.error(f"--load {args.load}: that is a {config.get('mode')} network; load it with "
                         f"vgrad-train {config.get('mode')} --load")
        args.config = config
        if args.data is None:
            args.data = config["data"]
        if args.seed is None:  # the same synthetic data
            args.seed = config.get("seed")
        if args.hidden_mult is not None:  # a multiple of the input size is a hidden size
            args.hidden, args.hidden_mult = args.hidden_mult * config["input_size"], None
        apply_saved_config(parser, args, config, ("raw_pixels", "activation", "hidden", "depth", "residual",
                                                  "dtype"))
    args.data = args.data or "synth"
    args.raw_pixels = bool(args.raw_pixels)
    args.activation = args.activation or "sigmoid"
    args.depth = args.depth or 1
    args.residual = bool(args.residual)
    args.dtype = args.dtype or "float64"
    if quick_mode(args):  # the synthetic data is quick as it is (and learns only after some hundred steps)
        if args.data in IMAGE_DATASETS:
            args.limit = min(args.limit or QUICK_LIMIT, QUICK_LIMIT)
        args.epochs = min(args.epochs, QUICK_EPOCHS)
    if args.raw_pixels and args.data not in IMAGE_DATASETS:
        parser.error(f"--raw-pixels is for image data ({', '.join(IMAGE_DATASETS)}); {args.data} has no pixels")
    if args.residual and args.depth < 2:
        parser.error("--residual adds skip connections around the hidden layers after the first: "
                     "give --depth 2 or more")
    if args.test and args.data == "synth":
        parser.error("--test: the synthetic data has no test set (its accuracies are on a validation set); "
                     "--test is for mnist, fashion and cifar10")
    if args.lr is None:
        args.lr = (DEFAULT_LR["synth"] if args.data == "synth" else DEFAULT_LR["raw"] if args.raw_pixels
                   else DEFAULT_LR[args.activation])
    args.progress = show_progress(args.progress)
    return args


EPILOG = f"""\
examples:
{__doc__.split(chr(10) * 2)[1]}

data and defaults:
  synth      The course's synthetic data: 2 features, 2 classes; 60000 training, 10000 validation instances.
             The course script's network and learning rate: 4 x 2 = 8 hidden units, sigmoid, lr {DEFAULT_LR['synth']}.
  mnist, fashion, cifar10
             Images, flattened. The loader holds out the last 5000 (shuffled) training images as the
             validation set; the test set is read only with --test. Pixels scaled to [0, 1], {IMAGE_HIDDEN} hidden
             units, lr {DEFAULT_LR['sigmoid']} with the sigmoid and {DEFAULT_LR['relu']} with relu. Measured on Fashion-MNIST
             ({IMAGE_HIDDEN} hidden units unless said, batches of 128; validation accuracy after epochs 1, 2, 3):
               sigmoid                  lr 0.003: .817 .836 .842   lr 0.01: .834 .848 .855   lr 0.03: .801 .842 .843
                                        lr 0.1: .493 .607 .606
               sigmoid, 3136 hidden     lr 0.01: .784 .815 .838 (and 12 times the arithmetic per epoch)
               relu                     lr 0.001: .836 .853 .863   lr 0.003: .843 .857 .866   lr 0.01: .148 .150 .189
               relu, --depth 4 --residual
                                        lr 0.001: .846 .864 .868   lr 0.003: .674 .769 .781   lr 0.01: nan
               sigmoid, --depth 4 --residual
                                        lr 0.01: .789 .834 .847
  --raw-pixels
             The course script's 0-255 pixels, network (4 x 784 = 3136 hidden units) and learning rate
             ({DEFAULT_LR['raw']}, its suggestion for MNIST): `vgrad-train -D mnist --raw-pixels` prints what
             `python experiments/train_mlp.py -D mnist -l {DEFAULT_LR['raw']}` prints, for the same --seed.
  The loss is the course's logceloss, summed over each batch: a larger batch takes larger steps.

exit status: 0 done; {EXIT_DATA} the data (or a file) could not be read; {EXIT_USAGE} a flag was wrong; \
{EXIT_DIVERGED} the training loss became nan or
infinite (the message says where; lower -l, or leave out --raw-pixels).

`vgrad-train cnn --help` lists the options of the CNN mode (questions 11-12)."""


def describe(args, input_size, output_size):
    sizes = " -> ".join(map(str, [input_size] + [args.hidden] * args.depth + [output_size]))
    kind = f"MLP {sizes}, {args.activation}" + (", residual" if args.residual else "")
    return kind


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["cnn"]:  # `vgrad-train cnn ...`: the CNN of questions 11-12 (vgrad/train_cnn.py)
        from .train_cnn import run as train_cnn
        return train_cnn(argv[1:], prog="vgrad-train cnn")
    args = parse_args(argv)
    if args.seed is not None:
        np.random.seed(args.seed)

    try:
        train, val, num_classes = load_data(args.data)
    except (FileNotFoundError, ValueError) as e:  # no data and no download, or a file vgrad won't read: the
        print(f"vgrad-train: {e}", file=sys.stderr)  # message says where to put the files, or what to do
        return EXIT_DATA
    (xtrain, ytrain), (xval, yval) = limited(args.limit, train, val)
    print("## loaded data:")
    print(f"         number of instances: {xtrain.shape[0]} in training, {xval.shape[0]} in validation")
    print(f" training class distribution: {np.bincount(ytrain)}")
    print(f"     val. class distribution: {np.bincount(yval)}")

    input_size = xtrain.shape[1]
    if args.load and input_size != args.config["input_size"]:
        print(f"vgrad-train: --load {args.load}: the saved network takes {args.config['input_size']} inputs, but "
              f"{args.data} has {input_size}", file=sys.stderr)
        return EXIT_USAGE
    if args.hidden is None:  # the course's 4 x the input size, except for scaled image data (see IMAGE_HIDDEN)
        mult = args.hidden_mult or (4 if args.data == "synth" or args.raw_pixels else None)
        args.hidden = mult * input_size if mult else IMAGE_HIDDEN
    model = Network(input_size, num_classes, depth=args.depth, activation=args.activation, residual=args.residual,
                    hidden_size=args.hidden)
    dtype = np.dtype(args.dtype)
    if dtype != np.float64:
        from .nn import to_dtype
        to_dtype(model, dtype)
    trained_before = 0
    if args.load:
        try:
            restore_model(args.load, model, args.saved)
        except ValueError as e:
            print(f"vgrad-train: {e}", file=sys.stderr)
            return EXIT_DATA
        trained_before = args.config.get("epochs_trained", 0)
    convert = input_converter(args.data, args.raw_pixels, dtype)

    def note(line):
        print(line, file=sys.stderr, flush=True)

    pixels = ("" if args.data not in IMAGE_DATASETS else
              "; raw 0-255 pixels" if args.raw_pixels else "; pixels scaled to [0, 1]")
    loaded = f"; loaded from {args.load} (trained {plural(trained_before, 'epoch')})" if args.load else ""
    note(f"vgrad-train: {args.data}{pixels}; {describe(args, input_size, num_classes)}{loaded}; learning rate "
         f"{args.lr:g}, batch {args.batch_size}, {args.dtype}")
    note(f"vgrad-train: accuracies are on the validation set ({len(yval)} instances"
         f"{' held out of the training data' if args.data != 'synth' else ''}), never the test set; "
         f"{EPOCH_LINE_LEGEND}")

    try:
        log = CsvLog(args.log) if args.log else None
    except OSError as e:
        print(f"vgrad-train: --log: {e}", file=sys.stderr)
        return EXIT_DATA
    print("\n## Starting training")
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported as such: see Diverged
            history = fit(model, (xtrain, ytrain), (xval, yval), args.epochs, args.batch_size, args.lr,
                          progress=args.progress, report=note, convert=convert, on_epoch=log and log.write,
                          first_epoch=trained_before + 1)
    except Diverged as e:
        hint = (f"--raw-pixels feeds 0-255 pixels, which need a tiny learning rate: leave it out to scale them to "
                f"[0, 1], or lower -l (to {args.lr / 10:g}, say)" if args.raw_pixels else
                f"lower the learning rate (-l {args.lr / 10:g}, say)")
        print(f"\nvgrad-train: {e}. Try again: {hint}. Stopped, exit status {EXIT_DIVERGED}"
              f"{'; the log has the epochs completed' if log else ''}; nothing else written.", file=sys.stderr)
        return EXIT_DIVERGED
    finally:
        if log:
            log.close()

    warning = not_learning(history["val_acc"][-1], yval, args.epochs)
    if warning:
        note(f"vgrad-train: {warning}. " + ("--raw-pixels feeds 0-255 pixels, which need a learning rate around "
                                           "0.0001 (or leave it out to scale them)" if args.raw_pixels else
                                           "Try another learning rate (-l), or more epochs."))
    where = (f"the validation set: {len(yval)} instances" +
             (" held out of the training data" if args.data != "synth" else ""))
    per_epoch = (f"; {plural(args.epochs, 'epoch')}, "
                 f"{np.mean(history['epoch_seconds']):.1f} s each" if args.epochs else "")
    print(f"(on {where}{per_epoch})")

    final_y, final_set, predictions = yval, f"validation set ({len(yval)} instances)", None
    if args.test:
        try:
            _, (xtest, ytest), _ = load_data(args.data, final=True)
        except (FileNotFoundError, ValueError) as e:
            print(f"vgrad-train: --test: {e}", file=sys.stderr)
            return EXIT_DATA
        if args.limit is not None:
            xtest, ytest = xtest[:max(args.limit // 4, 1)], ytest[:max(args.limit // 4, 1)]
        _, test_acc, predictions = evaluate(model, xtest, ytest, convert=convert)
        print(f"\n## Test set ({len(ytest)} instances, evaluated once, after training)")
        print(f"  test accuracy: {test_acc:.4}")
        final_y, final_set = ytest, f"test set ({len(ytest)} instances)"

    if args.plot:
        if args.epochs:
            plot_history(history, args.plot, batches_per_epoch=-(-len(ytrain) // args.batch_size),
                         title=f"{args.data}: {describe(args, input_size, num_classes)}, lr {args.lr:g}, "
                               f"batch {args.batch_size}")
            print(f"\n## plot written to {args.plot}")
        else:
            print("\n## no plot: no epochs were trained (-e 0)")
    if args.confusion:
        if predictions is None:
            predictions = evaluate(model, xval, yval, convert=convert)[2]
        names = CLASS_NAMES.get(args.data, [str(c) for c in range(num_classes)])
        plot_confusion(confusion_matrix(final_y, predictions, num_classes), args.confusion, names,
                       f"{args.data}, {final_set}")
        print(f"\n## confusion matrix on the {final_set} written to {args.confusion}")
    if args.save:
        config = {"mode": "mlp", "data": args.data, "seed": args.seed, "raw_pixels": args.raw_pixels,
                  "input_size": input_size, "output_size": num_classes, "hidden": args.hidden, "depth": args.depth,
                  "activation": args.activation, "residual": args.residual, "dtype": args.dtype,
                  "epochs_trained": trained_before + args.epochs, "lr": args.lr,
                  "val_accuracy": history["val_acc"][-1]}
        save_model(args.save, model, config)
        print(f"\n## network saved to {args.save} (vgrad-train --load {args.save} continues from it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
