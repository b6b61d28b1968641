"""
vgrad's equivalents of upstream vugrad's definitions: what an unchanged definition of a student's package is
replaced by. An equivalent computes the same numbers (float64 bit for bit) with the semantics of the revision
the definition comes from; where vgrad has no such equivalent, the definition is simply not listed and runs
as written (ReLU and relu of the 2022 revision compute `x * (x > 0)`, which differs from vgrad's ReLU on
-0.0 and NaN; Softmax of the first revisions; the functions of mnist.py, which the loaders below replace).

The loaders are replaced too, by vgrad's, which read the same files and give the same arrays: they still
work where the course copy's do not (vugrad's download URL is gone; NumPy 2 removed `np.int`).
"""
import ast

from .. import data, functions, modules, ops

# Ops, and functions that build graphs of them, with the same semantics in every upstream revision.
_SAME_IN_EVERY_REVISION = {
    **{name: getattr(ops, name) for name in (
        'Add', 'Sub', 'Multiply', 'MatrixMultiply', 'BatchMM', 'Log', 'Exp', 'Sigmoid', 'Id', 'Sum', 'RowSum',
        'RowMax', 'Normalize', 'Expand', 'Select', 'Squeeze', 'Unsqueeze')},
    'sigmoid': functions.sigmoid,
    'softmax': functions.softmax,
    'logsoftmax': functions.logsoftmax,
    'logceloss': functions.logceloss,
    'celoss': functions.celoss,
}

# Methods of a class that is kept as written (so that its __init__, say, keeps its revision's semantics:
# Linear's initial weights changed twice upstream), run by vgrad instead.
_METHODS = {
    ('Linear', 'forward'): modules.Linear.forward,
}


def load_mnist_unshuffled(final=False, flatten=True):
    """vugrad's load_mnist before the course copy of 2023: the training images in the file's order."""
    return data.load_mnist(final=final, flatten=flatten, shuffle_seed=-1)


def _load_synth(node):
    """load_synth(num_train, num_val) of every upstream revision is vgrad's (same draws from np.random, same
    quadratic form); the course copy of 2023 added a seed and changed the form: it runs as written."""
    names = [a.arg for a in node.args.args] if isinstance(node, ast.FunctionDef) else []
    return data.load_synth if names == ['num_train', 'num_val'] else None


def _load_mnist(node):
    """load_mnist changed its semantics with its signature: a stub (final), in file order (final, flatten),
    shuffled with default_rng(shuffle_seed) (final, flatten, shuffle_seed)."""
    names = [a.arg for a in node.args.args] if isinstance(node, ast.FunctionDef) else []
    if names == ['final', 'flatten']:
        return load_mnist_unshuffled
    if names == ['final', 'flatten', 'shuffle_seed']:
        return data.load_mnist
    return None


def for_definition(name, revisions, node=None):
    """vgrad's equivalent of an upstream definition, or None if vgrad has none."""
    if not revisions:
        return None
    if name == 'load_mnist':
        return _load_mnist(node)
    if name == 'load_synth':
        return _load_synth(node)
    return _SAME_IN_EVERY_REVISION.get(name)


def for_method(cls, method):
    """vgrad's version of an upstream method, or None."""
    return _METHODS.get((cls, method))


def describe(obj):
    """'vgrad.ops.Sigmoid', for the report."""
    module = getattr(obj, '__module__', 'vgrad')
    if module.startswith('vgrad.overlay'):
        module = 'vgrad.data'  # load_mnist_unshuffled is data.load_mnist(shuffle_seed=-1)
        return f'{module}.load_mnist(shuffle_seed=-1)'
    return f'{module}.{obj.__qualname__}'


def is_loader(obj):
    return obj in (data.load_synth, data.load_mnist, load_mnist_unshuffled)


def names():
    """Every name with an equivalent, for the tests."""
    return set(_SAME_IN_EVERY_REVISION) | {'load_mnist', 'load_synth'}


def methods():
    return dict(_METHODS)
