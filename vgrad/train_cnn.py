"""Trains the course's CNN (the PyTorch 60-minute blitz network, LeNet-like) with vgrad, and its variants.

    vgrad-train cnn                                       # the same as python experiments/train_cnn.py
    vgrad-train cnn -e 3                                  # LeNet, Adam, Fashion-MNIST: about 0.87 after 3 epochs
    vgrad-train cnn --optimizer sgd -l 0.01 --momentum 0.9
    vgrad-train cnn --dropout 0.3 --batchnorm --conv3 --residual
    vgrad-train cnn -e 5 --save cnn.npz --log cnn.csv --plot cnn.png
    vgrad-train cnn --load cnn.npz -e 0 --test --confusion confusion.png   # once, on the test set
    vgrad-train cnn -D cifar10                            # CIFAR-10 (vg.load_cifar10 downloads it once)
    VGRAD_QUICK=1 vgrad-train cnn                         # a small subset and one epoch: a smoke test

The network: conv 5x5 (6 channels) - relu - maxpool 2 - conv 5x5 (16) - relu - maxpool 2 - linear 400->120 -
relu - linear 120->84 - relu - linear 84->10, on 3x32x32 CIFAR images; (Fashion-)MNIST's 1x28x28 images are
padded by 2 in the first convolution, so the shapes are the same from there on. Pixels are scaled to [-1, 1],
as the blitz does. The variants of the assignment's questions 11-12:
    --conv3       a third convolution (3x3, 16 channels, padding 1) after the second pooling layer
    --residual    a residual connection from the second conv block to the first dense layer: that layer becomes
                  400->400 and its input is added to its output (relu(fc1(x)) + x)
    --batchnorm   batch normalisation after each convolution (before its relu)
    --dropout P   dropout with probability P after each hidden dense layer

Each epoch visits the training images in a new random order. One line per epoch gives its time, the training
loss and accuracy (averaged over the epoch, while the weights change) and the validation loss and accuracy after
it: the validation set is the last 5000 (shuffled) training images, held out by the loader, and is what to choose
settings by. The test set is read only with --test, once, after training. A progress bar on stderr counts the
batches of each epoch (on a terminal; --quiet turns it off).
"""
import argparse
import sys
import time

import numpy as np

import vgrad as vg
from vgrad import train as common
from vgrad.train import (EXIT_DATA, EXIT_DIVERGED, EXIT_USAGE, Diverged, check_finite, fraction, random_seed,
                         positive_float)

DATASETS = ('fashion', 'mnist', 'cifar10')
DEFAULT_LR = 1e-3
QUICK_LIMIT, QUICK_EPOCHS = 2000, 1
ARCHITECTURE = ('conv3', 'residual', 'batchnorm', 'dropout', 'dtype')


class DataError(Exception):
    """The data, or a file named by a flag, could not be read or written: the message says what to do."""


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


EPILOG = f"""\
The defaults: Fashion-MNIST, Adam with learning rate {DEFAULT_LR:g} (SGD: the same, with momentum 0.9), batches
of 64, 5 epochs, float32, seed 0. Measured with them: validation accuracy .849 .870 .878 after epochs 1, 2, 3
(and .876 on the test set after 3). The loss is the mean cross-entropy over each batch (PyTorch's), so, unlike
in the MLP mode, a larger batch does not mean larger steps.

exit status: 0 done; {EXIT_DATA} the data (or a file) could not be read; {EXIT_USAGE} a flag was wrong; \
{EXIT_DIVERGED} the training loss became nan or
infinite (the message says where; lower -l)."""


def build_parser(prog=None):
    """The CNN mode's argument parser."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='examples:\n' + __doc__.split('\n\n', 1)[1] + '\n' + EPILOG)
    common.add_common_arguments(
        parser, datasets=DATASETS, default_dataset='fashion', batch_size=64, epochs=5, dtype_default='float32',
        dataset_help='Which images to train on: fashion (Fashion-MNIST, read from disk), mnist, or cifar10 '
                     '(CIFAR-10, downloaded once)',
        lr_help=f'The learning rate of the optimizer (default {DEFAULT_LR:g}, for adam and sgd).',
        quick=f'only the first {QUICK_LIMIT} training images, {QUICK_EPOCHS} epoch', seed_default=0)
    parser.add_argument('--optimizer', default='adam', choices=['adam', 'sgd'],
                        help='The optimizer: adam (default) or sgd (with --momentum), as torch.optim has them.')
    parser.add_argument('--momentum', type=fraction, default=0.9, help="SGD's momentum, in [0, 1) (default 0.9).")
    parser.add_argument('--dropout', type=fraction, default=None, metavar='P',
                        help='Dropout after each hidden dense layer, dropping a unit with probability P, in [0, 1) '
                             '(default 0: none).')
    parser.add_argument('--conv3', action='store_true', default=None,
                        help='A third convolution (3x3, 16 channels, padding 1) after the second pooling layer.')
    parser.add_argument('--residual', action='store_true', default=None,
                        help='A residual connection around the first dense layer (which becomes 400->400): '
                             'relu(fc1(x)) + x.')
    parser.add_argument('--batchnorm', action='store_true', default=None,
                        help='Batch normalisation after each convolution, before its relu.')
    return parser


def parse_args(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    common.check_output_paths(parser, args)
    if common.quick_mode(args):
        args.limit = min(args.limit or QUICK_LIMIT, QUICK_LIMIT)
        args.epochs = min(args.epochs, QUICK_EPOCHS)
    args.config = None
    if args.load:
        try:
            args.config, args.saved = common.read_model(args.load)
        except ValueError as e:
            parser.error(str(e))
        if args.config.get('mode') != 'cnn':
            parser.error(f"--load {args.load}: that is an {args.config.get('mode')} network; load it with "
                         f"vgrad-train --load (without cnn)")
        args.data = args.data or args.config['data']
        common.apply_saved_config(parser, args, args.config, ARCHITECTURE)
    args.data = args.data or 'fashion'
    args.dtype = args.dtype or 'float32'
    args.dropout = args.dropout or 0.0
    for flag in ('conv3', 'residual', 'batchnorm'):
        setattr(args, flag, bool(getattr(args, flag)))
    if args.lr is None:
        args.lr = DEFAULT_LR
    args.progress = common.show_progress(args.progress)
    args.prog = parser.prog
    return args


def load_data(name, dtype, limit=None, final=False):
    """
    Images (N, C, H, W) scaled to [-1, 1] as the blitz tutorial does, and labels: the training images and the
    validation images held out of them (xtrain, ytrain, xval, yval); with final=True, all the training images
    and the test images instead. With limit, the first `limit` training images and the first limit // 4 others.
    """
    loader = {'fashion': vg.load_fashion_mnist, 'mnist': vg.load_mnist, 'cifar10': vg.load_cifar10}[name]
    (xtrain, ytrain), (xother, yother), _ = loader(final=final, flatten=False)
    if xtrain.ndim == 3:  # (Fashion-)MNIST: one channel
        xtrain, xother = xtrain[:, None], xother[:, None]
    if limit is not None:
        keep = max(limit // 4, 1)
        xtrain, ytrain, xother, yother = xtrain[:limit], ytrain[:limit], xother[:keep], yother[:keep]

    def scale(x):
        return (x.astype(dtype) / dtype(255) - dtype(0.5)) / dtype(0.5)
    return scale(xtrain), ytrain.astype(np.int64), scale(xother), yother.astype(np.int64)


def make_optimizer(args, params):
    if args.optimizer == 'adam':
        return vg.Adam(params, lr=args.lr)
    return vg.SGD(params, lr=args.lr, momentum=args.momentum)


def evaluate(model, x, y, batch_size=1000):
    """The mean cross-entropy, the accuracy and the predicted classes on (x, y), in evaluation mode and
    without building graphs."""
    model.eval()
    total, predictions = 0.0, np.empty(len(y), dtype=np.int64)
    try:
        with vg.no_grad():
            for fr in range(0, len(x), batch_size):
                logits = model(vg.TensorNode(x[fr:fr + batch_size], requires_grad=False))
                total += float(vg.cross_entropy(logits, y[fr:fr + batch_size], reduction='sum').value)
                predictions[fr:fr + batch_size] = logits.value.argmax(axis=1)
    finally:
        model.train()
    n = max(len(y), 1)
    return total / n, float((predictions == y).sum() / n) if len(y) else float('nan'), predictions


def accuracy(model, x, y, batch_size=1000):
    """The fraction of x classified as y, in evaluation mode and without building graphs."""
    return evaluate(model, x, y, batch_size)[1]


def train_epoch(model, opt, x, y, batch_size, losses, progress=None, epoch=None):
    """One pass over (x, y) in a random order; appends each batch's loss; returns the training accuracy.
    `progress` is a tqdm bar; with `epoch` given (a number, for the message), a non-finite loss raises Diverged."""
    return _train_epoch(model, opt, x, y, batch_size, losses, progress, epoch)[0]


def _train_epoch(model, opt, x, y, batch_size, losses, progress=None, epoch=None):
    """train_epoch, also returning the mean loss per image over the epoch."""
    order = np.random.permutation(len(x))
    correct, total = 0, 0.0
    batches = -(-len(x) // batch_size)
    for i, fr in enumerate(range(0, len(x), batch_size)):
        idx = order[fr:fr + batch_size]
        logits = model(vg.TensorNode(x[idx], requires_grad=False))
        loss = vg.cross_entropy(logits, y[idx])
        value = float(loss.value)
        if epoch is not None:
            check_finite(value, epoch, i + 1, batches, opt.param_groups[0]['lr'])
        loss.backward()
        opt.step()
        opt.zero_grad()
        correct += int((logits.value.argmax(axis=1) == y[idx]).sum())
        losses.append(value)
        total += value * len(idx)
        loss.clear()  # free the graph
        if progress is not None:
            progress.update(1)
    return correct / len(x), total / len(x)


def main(argv=None, prog=None):
    """Runs the experiment; returns a dict with the per-epoch numbers: 'train_acc', 'train_loss' (averaged over
    each epoch), 'val_acc', 'val_loss' (before training, then after each epoch), 'losses' (each batch's),
    'epoch_seconds', 'seconds' (in all) and, with --test, 'test_acc'. A non-finite loss raises Diverged.
    prog: the program's name in usage and error messages (default: the script's)."""
    args = parse_args(argv, prog)
    return _main(args)


def _main(args):
    np.random.seed(args.seed)
    dtype = np.dtype(args.dtype).type
    try:
        xtrain, ytrain, xval, yval = load_data(args.data, dtype, args.limit)
    except (FileNotFoundError, ValueError) as e:  # no data and no download, or a file vgrad won't read
        raise DataError(str(e)) from None
    config = {'mode': 'cnn', 'data': args.data, 'in_channels': xtrain.shape[1],
              'padding': 2 if xtrain.shape[2] == 28 else 0, 'conv3': args.conv3, 'residual': args.residual,
              'batchnorm': args.batchnorm, 'dropout': args.dropout, 'dtype': args.dtype}
    if args.config and (args.config['in_channels'], args.config['padding']) != (config['in_channels'],
                                                                                 config['padding']):
        raise DataError(f"--load {args.load}: the saved network takes {args.config['data']} images, which have "
                         f"another shape than {args.data}'s {xtrain.shape[1:]}")
    model = CNN(in_channels=config['in_channels'], padding=config['padding'], conv3=args.conv3,
                residual=args.residual, batchnorm=args.batchnorm, dropout=args.dropout)
    vg.to_dtype(model, dtype)
    opt = make_optimizer(args, model.parameters())
    trained_before = 0
    if args.config:
        same_optimizer = args.config.get('optimizer') == args.optimizer
        try:
            common.restore_model(args.load, model, args.saved, opt if same_optimizer else None)
        except ValueError as e:
            raise DataError(str(e)) from None
        trained_before = args.config.get('epochs_trained', 0)
    variant = ', '.join([f'{args.optimizer} lr={args.lr:g}'] +
                        (['momentum=%g' % args.momentum] if args.optimizer == 'sgd' else []) +
                        [name for name in ('conv3', 'residual', 'batchnorm') if getattr(args, name)] +
                        ([f'dropout={args.dropout:g}'] if args.dropout else []) +
                        [f'batch {args.batch_size}', args.dtype])
    loaded = ''
    if args.config:
        loaded = f'; loaded from {args.load} (trained {common.plural(trained_before, "epoch")}'
        saved_optimizer = args.config.get('optimizer')
        loaded += (f' with {saved_optimizer}, whose state is not carried over to {args.optimizer})'
                   if saved_optimizer != args.optimizer else ')')
    print(f'## {args.data}: {len(xtrain)} training and {len(xval)} validation images {xtrain.shape[1:]}, pixels '
          f'scaled to [-1, 1]; {variant}{loaded}')
    print(f'## validation: {len(xval)} images held out of the training set (the test set is read only with '
          f'--test); {common.EPOCH_LINE_LEGEND}', flush=True)

    history = common.new_history()
    try:
        log = common.CsvLog(args.log) if args.log else None
    except OSError as e:
        raise DataError(f'--log: {e}') from None
    try:
        start = time.perf_counter()
        val_loss, val_acc, _ = evaluate(model, xval, yval)
        history['val_loss'].append(val_loss)
        history['val_acc'].append(val_acc)
        total_epochs = trained_before + args.epochs
        print(common.epoch_line(trained_before, total_epochs, None, None, None, val_loss, val_acc), flush=True)
        batches = -(-len(xtrain) // args.batch_size)
        with np.errstate(over='ignore', invalid='ignore'):  # a blow-up is reported as such: see Diverged
            for epoch in range(trained_before + 1, total_epochs + 1):
                began = time.perf_counter()
                with common.progress_bar(batches, f'epoch {epoch}/{total_epochs}', args.progress) as bar:
                    try:
                        train_acc, train_loss = _train_epoch(model, opt, xtrain, ytrain, args.batch_size,
                                                             history['losses'], progress=bar, epoch=epoch)
                    except Diverged as e:
                        e.history = history
                        raise
                trained = time.perf_counter()
                val_loss, val_acc, _ = evaluate(model, xval, yval)
                now = time.perf_counter()
                record = common.epoch_record(epoch, trained - began, now - trained, now - start, train_loss,
                                             train_acc, val_loss, val_acc)
                common.add_record(history, record)
                if log:
                    log.write(record)
                print(common.epoch_line(epoch, total_epochs, record['epoch_seconds'], train_loss, train_acc,
                                        val_loss, val_acc), flush=True)
    finally:
        if log:
            log.close()
    history['seconds'] = time.perf_counter() - start
    per_epoch = (f'; {np.mean(history["epoch_seconds"]):.1f} s per epoch' if args.epochs else '')
    print(f'## finished: validation accuracy {history["val_acc"][-1]:.4f} after '
          f'{common.plural(total_epochs, "epoch")} ({len(yval)} images held out of the training set){per_epoch}')
    warning = common.not_learning(history['val_acc'][-1], yval, args.epochs)
    if warning:
        print(f'{args.prog}: {warning}. Try another learning rate (-l), or more epochs.', file=sys.stderr)

    final_y, final_set, predictions = yval, f'validation set ({len(yval)} images)', None
    if args.test:
        try:
            _, _, xtest, ytest = load_data(args.data, dtype, args.limit, final=True)
        except (FileNotFoundError, ValueError) as e:
            raise DataError(f'--test: {e}') from None
        _, history['test_acc'], predictions = evaluate(model, xtest, ytest)
        print(f'## test accuracy {history["test_acc"]:.4f} ({len(ytest)} test images, evaluated once, after '
              f'training)')
        final_y, final_set = ytest, f'test set ({len(ytest)} images)'
    if args.plot:
        if args.epochs:
            common.plot_history(history, args.plot, batches_per_epoch=batches,
                                title=f'{args.data}: {variant}')
            print(f'## plot written to {args.plot}')
        else:
            print('## no plot: no epochs were trained (-e 0)')
    if args.confusion:
        if predictions is None:
            predictions = evaluate(model, xval, yval)[2]
        common.plot_confusion(common.confusion_matrix(final_y, predictions, 10), args.confusion,
                              common.CLASS_NAMES[args.data], f'{args.data}, {final_set}')
        print(f'## confusion matrix on the {final_set} written to {args.confusion}')
    if args.save:
        common.save_model(args.save, model, {**config, 'optimizer': args.optimizer, 'lr': args.lr,
                                             'epochs_trained': total_epochs,
                                             'val_accuracy': history['val_acc'][-1]}, optimizer=opt)
        print(f'## network saved to {args.save} (vgrad-train cnn --load {args.save} continues from it)')
    return history


def run(argv=None, prog=None):
    """The command: main(), with its failures as messages and exit statuses rather than tracebacks."""
    args = parse_args(argv, prog)
    name = args.prog
    try:
        _main(args)
    except Diverged as e:
        print(f'\n{name}: {e}. Try again with a lower learning rate (-l {args.lr / 10:g}, say). Stopped, exit '
              f'status {EXIT_DIVERGED}{"; the log has the epochs completed" if args.log else ""}; nothing else '
              f'written.', file=sys.stderr)
        return EXIT_DIVERGED
    except DataError as e:
        print(f'{name}: {e}', file=sys.stderr)
        return EXIT_DATA
    return 0


if __name__ == '__main__':
    sys.exit(run())
