"""Trains the course's CNN (the PyTorch 60-minute blitz network, LeNet-like) with vgrad, and its variants.

    vgrad-train cnn                                       # the same as python experiments/train_cnn.py
    python experiments/train_cnn.py                       # LeNet, Adam, Fashion-MNIST, 5 epochs
    python experiments/train_cnn.py --optimizer sgd --lr 0.001 --momentum 0.9
    python experiments/train_cnn.py --dropout 0.3 --batchnorm --conv3 --residual
    python experiments/train_cnn.py --dataset cifar10     # CIFAR-10 (vg.load_cifar10 downloads it once)
    VGRAD_QUICK=1 python experiments/train_cnn.py         # a small subset and one epoch: a smoke test

The network: conv 5x5 (6 channels) - relu - maxpool 2 - conv 5x5 (16) - relu - maxpool 2 - linear 400->120 -
relu - linear 120->84 - relu - linear 84->10, on 3x32x32 CIFAR images; Fashion-MNIST's 1x28x28 images are
padded by 2 in the first convolution, so the shapes are the same from there on. The variants of the
assignment's questions 11-12:
    --conv3       a third convolution (3x3, 16 channels, padding 1) after the second pooling layer
    --residual    a residual connection from the second conv block to the first dense layer: that layer becomes
                  400->400 and its input is added to its output (relu(fc1(x)) + x)
    --batchnorm   batch normalisation after each convolution (before its relu)
    --dropout P   dropout with probability P after each hidden dense layer
Prints the training and test accuracy after each epoch; --plot FILE saves the loss curve.
"""
import argparse
import os
import time

import numpy as np

import vgrad as vg
from vgrad.train import fraction, nonnegative_int, positive_float, positive_int, random_seed


class CNN(vg.Module):
    """The blitz CNN with the assignment's optional changes."""

    def __init__(self, in_channels=3, padding=0, conv3=False, residual=False, batchnorm=False, dropout=0.0):
        super().__init__()
        self.conv1 = vg.Conv2d(in_channels, 6, 5, padding=padding)
        self.conv2 = vg.Conv2d(6, 16, 5)
        self.conv3 = vg.Conv2d(16, 16, 3, padding=1) if conv3 else None
        self.norms = [vg.BatchNorm2d(c) for c in (6, 16, 16)[:3 if conv3 else 2]] if batchnorm else None
        self.residual = residual
        self.fc1 = vg.Linear(400, 400 if residual else 120)
        self.fc2 = vg.Linear(400 if residual else 120, 84)
        self.fc3 = vg.Linear(84, 10)
        self.drop = vg.Dropout(dropout) if dropout > 0 else None

    def block(self, x, conv, i):
        x = conv(x)
        if self.norms is not None:
            x = self.norms[i](x)
        return vg.relu(x)

    def forward(self, x):
        x = vg.max_pool2d(self.block(x, self.conv1, 0), 2)
        x = vg.max_pool2d(self.block(x, self.conv2, 1), 2)
        if self.conv3 is not None:
            x = self.block(x, self.conv3, 2)
        x = vg.flatten(x)
        h = vg.relu(self.fc1(x))
        if self.residual:
            h = h + x  # the skip connection: fc1 learns a change to its input
        if self.drop is not None:
            h = self.drop(h)
        h = vg.relu(self.fc2(h))
        if self.drop is not None:
            h = self.drop(h)
        return self.fc3(h)  # logits: vg.cross_entropy applies the softmax


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument('--dataset', default='fashion', choices=['fashion', 'cifar10'],
                        help='fashion: Fashion-MNIST (default, read from disk); cifar10: CIFAR-10')
    parser.add_argument('--optimizer', default='adam', choices=['adam', 'sgd'])
    parser.add_argument('--lr', type=positive_float, default=None,
                        help='learning rate (default 1e-3 for adam and sgd)')
    parser.add_argument('--momentum', type=fraction, default=0.9, help="SGD's momentum, in [0, 1) (default 0.9)")
    parser.add_argument('--epochs', type=nonnegative_int, default=5)
    parser.add_argument('--batch-size', type=positive_int, default=64)
    parser.add_argument('--dropout', type=fraction, default=0.0, metavar='P',
                        help='the probability of dropping a unit, in [0, 1)')
    parser.add_argument('--conv3', action='store_true')
    parser.add_argument('--residual', action='store_true')
    parser.add_argument('--batchnorm', action='store_true')
    parser.add_argument('--dtype', default='float32', choices=['float32', 'float64'])
    parser.add_argument('--seed', type=random_seed, default=0, help='seeds np.random: weights, shuffling and dropout')
    parser.add_argument('--limit', type=positive_int, default=None,
                        help='use only the first LIMIT training images (and LIMIT // 4 test images)')
    parser.add_argument('--quick', action='store_true',
                        help='a smoke test: 2000 training images, 1 epoch (also with VGRAD_QUICK=1)')
    parser.add_argument('--plot', default=None, metavar='FILE', help='save the loss curve to FILE (.png, .pdf)')
    args = parser.parse_args(argv)
    if args.quick or os.environ.get('VGRAD_QUICK') == '1':
        args.limit = min(args.limit or 2000, 2000)
        args.epochs = 1
    if args.lr is None:
        args.lr = 1e-3
    return args


def load_data(name, dtype, limit=None):
    """Training and test images (N, C, H, W) scaled to [-1, 1] as the blitz tutorial does, and labels."""
    if name == 'fashion':
        (xtrain, ytrain), (xtest, ytest), _ = vg.load_fashion_mnist(final=True, flatten=False)
        xtrain, xtest = xtrain[:, None], xtest[:, None]
    else:
        (xtrain, ytrain), (xtest, ytest), _ = vg.load_cifar10(final=True, flatten=False)
    if limit is not None:
        xtrain, ytrain, xtest, ytest = xtrain[:limit], ytrain[:limit], xtest[:max(limit // 4, 1)], ytest[:max(limit // 4, 1)]

    def scale(x):
        return (x.astype(dtype) / dtype(255) - dtype(0.5)) / dtype(0.5)
    return scale(xtrain), ytrain.astype(np.int64), scale(xtest), ytest.astype(np.int64)


def make_optimizer(args, params):
    if args.optimizer == 'adam':
        return vg.Adam(params, lr=args.lr)
    return vg.SGD(params, lr=args.lr, momentum=args.momentum)


def accuracy(model, x, y, batch_size=1000):
    """The fraction of x classified as y, in evaluation mode and without building graphs."""
    model.eval()
    correct = 0
    with vg.no_grad():
        for fr in range(0, len(x), batch_size):
            logits = model(vg.TensorNode(x[fr:fr + batch_size], requires_grad=False))
            correct += int((logits.value.argmax(axis=1) == y[fr:fr + batch_size]).sum())
    model.train()
    return correct / len(x)


def train_epoch(model, opt, x, y, batch_size, losses):
    """One pass over (x, y) in a random order; appends each batch's loss; returns the training accuracy."""
    order = np.random.permutation(len(x))
    correct = 0
    for fr in range(0, len(x), batch_size):
        idx = order[fr:fr + batch_size]
        logits = model(vg.TensorNode(x[idx], requires_grad=False))
        loss = vg.cross_entropy(logits, y[idx])
        loss.backward()
        opt.step()
        opt.zero_grad()
        correct += int((logits.value.argmax(axis=1) == y[idx]).sum())
        losses.append(float(loss.value))
        loss.clear()  # free the graph
    return correct / len(x)


def plot_losses(losses, path, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=0.5, alpha=0.5, label='batch')
    window = max(1, len(losses) // 50)
    if len(losses) >= window:
        ax.plot(np.arange(window - 1, len(losses)), np.convolve(losses, np.ones(window) / window, 'valid'),
                label=f'mean of {window}')
    ax.set(xlabel='batch', ylabel='cross-entropy loss', title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None, prog=None):
    """Runs the experiment; returns a dict with the per-epoch accuracies, the batch losses and the time.
    prog: the program's name in usage and error messages (default: the script's)."""
    args = parse_args(argv, prog)
    np.random.seed(args.seed)
    dtype = np.dtype(args.dtype).type
    xtrain, ytrain, xtest, ytest = load_data(args.dataset, dtype, args.limit)
    model = CNN(in_channels=xtrain.shape[1], padding=2 if xtrain.shape[2] == 28 else 0, conv3=args.conv3,
                residual=args.residual, batchnorm=args.batchnorm, dropout=args.dropout)
    vg.to_dtype(model, dtype)
    opt = make_optimizer(args, model.parameters())
    variant = ', '.join([f'{args.optimizer} lr={args.lr}'] + (['momentum=%g' % args.momentum] if args.optimizer == 'sgd' else [])
                        + [name for name in ('conv3', 'residual', 'batchnorm') if getattr(args, name)]
                        + ([f'dropout={args.dropout}'] if args.dropout else []))
    print(f'## {args.dataset}: {len(xtrain)} training and {len(xtest)} test images {xtrain.shape[1:]}; {variant}')

    history = {'train_acc': [], 'test_acc': [], 'losses': []}
    start = time.perf_counter()
    for epoch in range(args.epochs):
        train_acc = train_epoch(model, opt, xtrain, ytrain, args.batch_size, history['losses'])
        test_acc = accuracy(model, xtest, ytest)
        history['train_acc'].append(train_acc)
        history['test_acc'].append(test_acc)
        print(f'epoch {epoch + 1:2d}: train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f} '
              f'({time.perf_counter() - start:.1f} s)', flush=True)
    history['seconds'] = time.perf_counter() - start
    if args.plot:
        plot_losses(history['losses'], args.plot, f'{args.dataset}: {variant}')
        print(f'loss curve saved to {args.plot}')
    return history


if __name__ == '__main__':
    main()
