"""
Functions built from ops: activations, softmax and the cross-entropy losses.

logsoftmax and logceloss (and Linear, in modules.py) are chains of several ops in vugrad. vgrad computes
each chain as one fused op (LogSoftmax, LogCELoss, Affine) with the same numbers, which is much faster.
Inside `with vg.unfused():` they build vugrad's graphs op for op instead, to inspect every node (the
assignment's questions 5-7).

The data loaders live in vgrad.data and are re-exported here, where vugrad keeps them.
"""
import contextlib
import threading

from .data import load_mnist, load_synth  # noqa: F401  (vugrad has them in this module)
from .ops import (Exp, Expand, Log, LogCELoss, LogSoftmax, Normalize, ReLU, RowMax, RowSum, Select, Sigmoid, Sum,
                  Unsqueeze)


class _Fusion(threading.local):
    enabled = True  # per thread, like vg.no_grad()


_fusion = _Fusion()


def fused():
    """True when Linear, logsoftmax, logceloss and a Sequential's Conv2d + ReLU build fused ops (the default),
    False inside vg.unfused()."""
    return _fusion.enabled


@contextlib.contextmanager
def unfused():
    """
    Build vugrad's graphs op for op: Linear as BatchMM, Expand and Add; logsoftmax as its ten ops; logceloss
    as Select, Sum and a multiplication by -1; a Sequential's Conv2d and the ReLU after it as Convolution and
    ReLU. Slower, but every intermediate node is there to inspect.

        with vg.unfused():
            loss = vg.logceloss(mlp(batch), targets)
    """
    previous = _fusion.enabled
    _fusion.enabled = False
    try:
        yield
    finally:
        _fusion.enabled = previous


def celoss(outputs, targets):
    """
    The cross-entropy loss of predicted class probabilities.

    :param outputs: TensorNode (n, c): a distribution over the c classes for each of the n instances.
    :param targets: integer array (n,): the true class of each instance.
    :return: a scalar TensorNode: the summed negative log-probability of the true classes.
    """
    return logceloss(Log.do_forward(outputs), targets)


def logceloss(logprobs, targets):
    """
    The cross-entropy loss from log-probabilities (as logsoftmax gives them). Taking logs of probabilities
    that are close to zero is unstable; computing log-probabilities directly is not.

    :param logprobs: TensorNode (n, c) of log-probabilities.
    :param targets: integer array (n,): the true class of each instance.
    :return: a scalar TensorNode: minus the sum over instances of the log-probability of the true class.
    """
    if _fusion.enabled:
        return LogCELoss.do_forward(logprobs, targets=targets)
    per_instance = Select.do_forward(logprobs, indices=targets)
    return Sum.do_forward(per_instance) * -1.0


def sigmoid(x):
    """The element-wise sigmoid of a TensorNode."""
    return Sigmoid.do_forward(x)


def relu(x):
    """The element-wise ReLU, max(x, 0), of a TensorNode."""
    return ReLU.do_forward(x)


def softmax(x):
    """
    The row-wise softmax of a matrix: exp, then normalise each row to sum to one.

    For a loss, prefer logsoftmax: exp overflows for large inputs, and the log of a tiny probability is
    inaccurate.
    """
    return Normalize.do_forward(Exp.do_forward(x))


def logsoftmax(x):
    """
    The logarithm of the row-wise softmax of a matrix, computed stably with the log-sum-exp trick:
    log softmax(x)_ij = (x_ij - m_i) - log sum_k exp(x_ik - m_i), where m_i is the row's maximum, so that no
    exp overflows.
    """
    if len(x.size()) != 2:
        raise ValueError(f'logsoftmax: expected a matrix (n, c), got shape {x.size()}')
    if _fusion.enabled:
        return LogSoftmax.do_forward(x)
    xcols = x.size(1)

    xmax = RowMax.do_forward(x)
    xmax = Unsqueeze.do_forward(xmax, dim=1)
    xmax = Expand.do_forward(xmax, repeats=xcols, dim=1)

    diff = x - xmax

    denominator = RowSum.do_forward(Exp.do_forward(diff))
    denominator = Log.do_forward(denominator)
    denominator = Unsqueeze.do_forward(denominator, dim=1)
    denominator = Expand.do_forward(denominator, repeats=xcols, dim=1)

    return diff - denominator


__all__ = ['celoss', 'logceloss', 'sigmoid', 'relu', 'softmax', 'logsoftmax', 'unfused', 'fused', 'load_synth',
           'load_mnist']
