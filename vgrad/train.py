"""
vgrad-train: train an MLP with plain minibatch gradient descent, as the course's experiment does.

    vgrad-train                                  # the synthetic data, 20 epochs (runs with no downloads)
    vgrad-train -D mnist -l 0.0001 -e 5 --plot mnist.png
    vgrad-train -D fashion --activation relu --depth 3 --residual --seed 0
    python -m vgrad.train --help                 # the same program
    vgrad-train cnn --optimizer adam --dropout 0.1   # the CNN of questions 11-12: see vgrad/train_cnn.py

With the default network (one hidden layer, sigmoid) and the same --seed, it prints exactly what the course
script experiments/train_mlp.py prints: the validation accuracy before each epoch and the mean training loss
over it; then the accuracy after the last epoch. A progress bar on stderr counts the batches of each epoch.
--plot draws the loss and the accuracy per epoch into a PNG file, like the figures of the report.

The functions here (Network, fit, plot_history) are also what the notebooks use.
"""
import math
import numbers
import sys
from argparse import ArgumentParser, ArgumentTypeError, BooleanOptionalAction

import numpy as np

from . import data
from .core import Module, TensorNode
from .functions import logceloss, logsoftmax, relu, sigmoid
from .modules import Linear

DATASETS = ("synth", "mnist", "fashion")
ACTIVATIONS = {"sigmoid": sigmoid, "relu": relu}


class Network(Module):
    """
    The course's MLP, and its deeper and residual variants (question 10):

        input -> Linear -> act -> [Linear -> act] x (depth - 1) -> Linear -> logsoftmax

    With residual=True each of the extra hidden layers adds its input to its output, h <- h + act(W h + b), so
    the signal (and the gradient) can skip it. depth=1 with the sigmoid is the course script's MLP, with its
    weights drawn from np.random in the same order.
    """

    def __init__(self, input_size, output_size, hidden_mult=4, depth=1, activation="sigmoid", residual=False):
        super().__init__()
        if depth < 1:
            raise ValueError(f"Network: depth must be at least 1 (one hidden layer), got {depth}")
        if hidden_mult < 1:
            raise ValueError(f"Network: hidden_mult must be at least 1, got {hidden_mult}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"Network: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        hidden_size = hidden_mult * input_size
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


def load_data(name):
    """The course's data: (xtrain, ytrain), (xval, yval), num_classes. MNIST and Fashion-MNIST as raw pixels."""
    if name == "synth":
        return data.load_synth()
    if name == "mnist":
        return data.load_mnist(final=False, flatten=True)
    if name == "fashion":
        return data.load_fashion_mnist(final=False, flatten=True)
    raise ValueError(f"Dataset {name} not recognized: use one of {', '.join(DATASETS)}")


def accuracy(model, x, y):
    """The fraction of rows of x whose highest output is the class in y."""
    out = model(TensorNode(x))
    predictions = np.argmax(out.value, axis=1)
    out.clear()  # let the graph be garbage collected
    return (predictions == y).sum() / y.shape[0]


def train_epoch(model, x, y, batch_size, lr, progress=None):
    """One pass of gradient descent over (x, y) in order; returns the summed loss. `progress` is a tqdm bar."""
    total = 0.0
    for fr in range(0, x.shape[0], batch_size):
        to = min(fr + batch_size, x.shape[0])
        loss = logceloss(model(TensorNode(x[fr:to])), y[fr:to])

        total += loss.value  # the raw value: summing TensorNodes would keep every graph alive
        loss.backward()
        for parm in model.parameters():
            parm.value -= lr * parm.grad

        loss.zero_grad()
        loss.clear()
        if progress is not None:
            progress.update(1)
    return total


def fit(model, train, val, epochs, batch_size=128, lr=0.01, progress=True, verbose=True):
    """
    Train `model` on train = (x, y) with plain minibatch gradient descent, evaluating on val = (x, y).

    :param progress: show a tqdm progress bar on stderr for each epoch.
    :param verbose: print the course script's lines for each epoch.

    :return: a history dict: 'accuracy' holds the validation accuracy before each epoch and after the last
        (epochs + 1 values), 'loss' the mean training loss over each epoch (epochs values).
    """
    from tqdm import tqdm

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

    history = {"accuracy": [], "loss": []}
    batches = -(-xtrain.shape[0] // batch_size)
    for epoch in range(epochs):
        say(f"epoch {epoch:03}")
        acc = accuracy(model, xval, yval)
        history["accuracy"].append(float(acc))
        say(f"       accuracy: {acc:.4}")

        with tqdm(total=batches, desc=f"epoch {epoch:03}", unit="batch", leave=False, file=sys.stderr,
                  disable=not progress) as bar:
            cl = train_epoch(model, xtrain, ytrain, batch_size, lr, progress=bar)
        history["loss"].append(float(cl / xtrain.shape[0]))
        say(f"   running loss: {cl / xtrain.shape[0]:.4}")

    acc = accuracy(model, xval, yval)
    history["accuracy"].append(float(acc))
    say("\n## Finished training")
    say(f"       accuracy: {acc:.4}")
    return history


def plot_history(history, path, title=None):
    """Draw the loss and accuracy per epoch (as fit returns them) side by side into an image file."""
    try:
        from matplotlib.figure import Figure  # no pyplot: leaves the caller's matplotlib backend alone
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install matplotlib") from None

    figure = Figure(figsize=(9, 3.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    epochs = len(history["loss"])
    left.plot(range(1, epochs + 1), history["loss"], marker="o")
    left.set(xlabel="epoch", ylabel="mean training loss", title="training loss")
    right.plot(range(0, epochs + 1), history["accuracy"], marker="o", color="tab:green")
    right.set(xlabel="epochs trained", ylabel="validation accuracy", title="validation accuracy")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=100)


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


def parse_args(argv=None):
    parser = ArgumentParser(prog="vgrad-train", description=__doc__.strip().splitlines()[0].split(": ", 1)[1],
                            epilog="`vgrad-train cnn --help` lists the options of the CNN mode.")
    parser.add_argument("-D", "--dataset", dest="data", default="synth", choices=DATASETS,
                        help="Which dataset to use (default synth, which needs no download).")
    parser.add_argument("-b", "--batch-size", dest="batch_size", default=128, type=positive_int,
                        help="The batch size (instances per forward/backward pass).")
    parser.add_argument("-e", "--epochs", dest="epochs", default=20, type=nonnegative_int,
                        help="The number of epochs (complete passes over the training data).")
    parser.add_argument("-l", "--learning-rate", dest="lr", default=0.01, type=positive_float,
                        help="The learning rate: the size of the gradient descent steps. "
                             "0.1 works well for synth, 0.0001 for MNIST.")
    parser.add_argument("--activation", default="sigmoid", choices=tuple(ACTIVATIONS),
                        help="The non-linearity of the hidden layers.")
    parser.add_argument("--hidden-mult", dest="hidden_mult", default=4, type=positive_int,
                        help="How many times bigger each hidden layer is than the input layer.")
    parser.add_argument("--depth", default=1, type=positive_int, help="The number of hidden layers.")
    parser.add_argument("--residual", action="store_true",
                        help="Add a skip connection around each hidden layer after the first (needs --depth 2+).")
    parser.add_argument("--seed", default=None, type=random_seed,
                        help="Seed np.random with this before loading the data (fixes the synthetic data and "
                             "the initial weights).")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="Draw the loss and accuracy per epoch into this image file.")
    parser.add_argument("--progress", default=True, action=BooleanOptionalAction,
                        help="Show a progress bar per epoch on stderr.")
    args = parser.parse_args(argv)
    if args.residual and args.depth < 2:
        parser.error("--residual adds skip connections around the hidden layers after the first: "
                     "give --depth 2 or more")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["cnn"]:  # `vgrad-train cnn ...`: the CNN of questions 11-12 (vgrad/train_cnn.py)
        from .train_cnn import main as train_cnn
        train_cnn(argv[1:], prog="vgrad-train cnn")
        return 0
    args = parse_args(argv)
    if args.seed is not None:
        np.random.seed(args.seed)

    try:
        (xtrain, ytrain), (xval, yval), num_classes = load_data(args.data)
    except (FileNotFoundError, ValueError) as e:  # no data and no download, or a file vgrad won't read: the
        print(f"vgrad-train: {e}", file=sys.stderr)  # message says where to put the files, or what to do
        return 1
    print("## loaded data:")
    print(f"         number of instances: {xtrain.shape[0]} in training, {xval.shape[0]} in validation")
    print(f" training class distribution: {np.bincount(ytrain)}")
    print(f"     val. class distribution: {np.bincount(yval)}")

    model = Network(xtrain.shape[1], num_classes, hidden_mult=args.hidden_mult, depth=args.depth,
                    activation=args.activation, residual=args.residual)

    print("\n## Starting training")
    history = fit(model, (xtrain, ytrain), (xval, yval), args.epochs, args.batch_size, args.lr,
                  progress=args.progress)
    if args.plot:
        kind = f"{args.depth} hidden layer{'s' if args.depth > 1 else ''}, {args.activation}" + \
               (", residual" if args.residual else "")
        plot_history(history, args.plot, title=f"{args.data}: {kind}, lr {args.lr:g}, batch {args.batch_size}")
        print(f"\n## plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
