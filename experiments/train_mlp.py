"""Trains a one-hidden-layer MLP with plain minibatch gradient descent, as in the course's experiment.

    python experiments/train_mlp.py -D synth -e 5
    python experiments/train_mlp.py -D mnist -l 0.0001 --seed 0

Prints the validation accuracy before each epoch and the mean training loss after it.
"""
from argparse import ArgumentParser

import numpy as np

import vgrad as vg


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-D", "--dataset", dest="data", default="synth", type=str,
                        help="Which dataset to use. [synth, mnist]")
    parser.add_argument("-b", "--batch-size", dest="batch_size", default=128, type=int,
                        help="The batch size (instances per forward/backward pass).")
    parser.add_argument("-e", "--epochs", dest="epochs", default=20, type=int,
                        help="The number of epochs (complete passes over the training data).")
    parser.add_argument("-l", "--learning-rate", dest="lr", default=0.01, type=float,
                        help="The learning rate: the size of the gradient descent steps. "
                             "0.1 works well for synth, 0.0001 for MNIST.")
    parser.add_argument("--seed", dest="seed", default=None, type=int,
                        help="If given, seed np.random with it before loading the data "
                             "(this fixes the data for synth and the initial weights).")
    args = parser.parse_args(argv)
    if args.data not in ("synth", "mnist"):
        parser.error(f"Dataset {args.data} not recognized.")
    return args


def load_data(name):
    if name == "synth":
        return vg.load_synth()
    return vg.load_mnist(final=False, flatten=True)


def accuracy(model, x, y):
    """Fraction of rows of x whose highest output is the class in y."""
    out = model(vg.TensorNode(x))
    predictions = np.argmax(out.value, axis=1)
    out.clear()  # let the graph be garbage collected
    return (predictions == y).sum() / y.shape[0]


def train_epoch(model, x, y, batch_size, lr):
    """One pass of gradient descent over (x, y) in order; returns the summed loss."""
    total = 0.0
    for fr in range(0, x.shape[0], batch_size):
        to = min(fr + batch_size, x.shape[0])
        outputs = model(vg.TensorNode(value=x[fr:to, :]))
        loss = vg.logceloss(outputs, y[fr:to])

        total += loss.value  # the raw value: summing TensorNodes would keep every graph alive
        loss.backward()
        for parm in model.parameters():
            parm.value -= lr * parm.grad

        loss.zero_grad()
        loss.clear()
    return total


def main(argv=None):
    args = parse_args(argv)
    if args.seed is not None:
        np.random.seed(args.seed)

    (xtrain, ytrain), (xval, yval), num_classes = load_data(args.data)
    print('## loaded data:')
    print(f'         number of instances: {xtrain.shape[0]} in training, {xval.shape[0]} in validation')
    print(f' training class distribution: {np.bincount(ytrain)}')
    print(f'     val. class distribution: {np.bincount(yval)}')

    n, num_features = xtrain.shape
    mlp = vg.MLP(input_size=num_features, output_size=num_classes)

    print('\n## Starting training')
    for epoch in range(args.epochs):
        print(f'epoch {epoch:03}')
        print(f'       accuracy: {accuracy(mlp, xval, yval):.4}')

        cl = train_epoch(mlp, xtrain, ytrain, args.batch_size, args.lr)
        print(f'   running loss: {cl/n:.4}')


if __name__ == "__main__":
    main()
