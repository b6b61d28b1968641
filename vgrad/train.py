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
import sys
from argparse import ArgumentParser, BooleanOptionalAction

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


def parse_args(argv=None):
    parser = ArgumentParser(prog="vgrad-train", description=__doc__.strip().splitlines()[0].split(": ", 1)[1],
                            epilog="`vgrad-train cnn --help` lists the options of the CNN mode.")
    parser.add_argument("-D", "--dataset", dest="data", default="synth", choices=DATASETS,
                        help="Which dataset to use (default synth, which needs no download).")
    parser.add_argument("-b", "--batch-size", dest="batch_size", default=128, type=int,
                        help="The batch size (instances per forward/backward pass).")
    parser.add_argument("-e", "--epochs", dest="epochs", default=20, type=int,
                        help="The number of epochs (complete passes over the training data).")
    parser.add_argument("-l", "--learning-rate", dest="lr", default=0.01, type=float,
                        help="The learning rate: the size of the gradient descent steps. "
                             "0.1 works well for synth, 0.0001 for MNIST.")
    parser.add_argument("--activation", default="sigmoid", choices=tuple(ACTIVATIONS),
                        help="The non-linearity of the hidden layers.")
    parser.add_argument("--hidden-mult", dest="hidden_mult", default=4, type=int,
                        help="How many times bigger each hidden layer is than the input layer.")
    parser.add_argument("--depth", default=1, type=int, help="The number of hidden layers.")
    parser.add_argument("--residual", action="store_true",
                        help="Add a skip connection around each hidden layer after the first (needs --depth 2+).")
    parser.add_argument("--seed", default=None, type=int,
                        help="Seed np.random with this before loading the data (fixes the synthetic data and "
                             "the initial weights).")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="Draw the loss and accuracy per epoch into this image file.")
    parser.add_argument("--progress", default=True, action=BooleanOptionalAction,
                        help="Show a progress bar per epoch on stderr.")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.epochs < 0 or args.hidden_mult < 1 or args.depth < 1:
        parser.error("--batch-size, --hidden-mult and --depth must be at least 1, --epochs at least 0")
    if args.residual and args.depth < 2:
        parser.error("--residual adds skip connections around the hidden layers after the first: "
                     "give --depth 2 or more")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["cnn"]:  # `vgrad-train cnn ...`: the CNN of questions 11-12 (vgrad/train_cnn.py)
        from .train_cnn import main as train_cnn
        train_cnn(argv[1:])
        return 0
    args = parse_args(argv)
    if args.seed is not None:
        np.random.seed(args.seed)

    try:
        (xtrain, ytrain), (xval, yval), num_classes = load_data(args.data)
    except FileNotFoundError as e:  # no data and no download: the message says where to put the files
        print(f"vgrad-train: {e}", file=sys.stderr)
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
