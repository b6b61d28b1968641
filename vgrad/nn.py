"""
The CNN toolkit: functions (vg.conv2d, vg.max_pool2d, vg.dropout, vg.batch_norm, vg.cross_entropy, ...) and
modules (vg.Conv2d, vg.MaxPool2d, vg.Dropout, vg.BatchNorm2d, vg.Sequential, ...) with PyTorch's names,
arguments and defaults, so the course's PyTorch CNN (the 60-minute blitz) can be written in vgrad line by line:

    net = vg.Sequential(vg.Conv2d(3, 6, 5), vg.relu, vg.MaxPool2d(2),
                        vg.Conv2d(6, 16, 5), vg.relu, vg.MaxPool2d(2), vg.Flatten(),
                        vg.Linear(400, 120), vg.relu, vg.Linear(120, 84), vg.relu, vg.Linear(84, 10))
    loss = vg.cross_entropy(net(vg.TensorNode(images)), labels)

The ops themselves (each with its C kernels and NumPy reference) are in nn_ops.py. Random draws (initial
weights, dropout masks) come from np.random, so np.random.seed(...) makes a run repeatable.
"""
import math
import numbers

import numpy as np

from .core import DTypeWarning, Module, TensorNode, _not_a_node, _warn, to_dtype  # (to_dtype: Module.to uses it)
from .functions import fused, relu
from .nn_ops import (AvgPooling, BatchNormalization, Convolution, ConvolutionReLU, CrossEntropy, DropoutMask,
                     MaxPooling, Reshape)
from .ops import ReLU

# ---- checks of the arguments, made when a module is built: a bad size fails there, named, rather than as a
# ZeroDivisionError in its initialisation or a NaN in training

def _int(owner, what, value, least):
    """value as an int, if it is an int (Python's or NumPy's, not a bool) of at least `least`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f'{owner}: {what} must be an int, got {value!r}')
    if value < least:
        raise ValueError(f'{owner}: {what} must be at least {least}, got {value}')
    return int(value)


def _int_pair(owner, what, value, least):
    """An int or a pair of ints (rows, columns), each at least `least`, as a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f'{owner}: {what} must be an int or a pair of ints, got {value!r}')
        for v in value:
            if isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) and v < least:
                raise ValueError(f'{owner}: {what} must be at least {least}, got {tuple(value)!r}')
        return tuple(_int(owner, what, v, least) for v in value)
    value = _int(owner, what, value, least)
    return value, value


def _number(owner, what, value, low, high=None, low_open=False):
    """value, if it is a real number (not NaN or infinite) of at least low (greater than low if low_open) and,
    if high is given, at most high."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f'{owner}: {what} must be a number, got {value!r}')
    if not (math.isfinite(value) and (value > low if low_open else value >= low) and (high is None or value <= high)):
        if high is not None:
            wanted = f'lie in [{low:g}, {high:g}]'
        else:
            wanted = f'be a finite number {"greater than" if low_open else "of at least"} {low:g}'
        raise ValueError(f'{owner}: {what} must {wanted}, got {value}')
    return value


def _value(owner, x):
    """x.value, for a module's input x that must be a TensorNode."""
    try:
        return x.value
    except AttributeError:
        raise _not_a_node(owner, x) from None


# ---- the dtype of a layer's input against its weights: NumPy converts a mismatch silently, on every call

_dtype_warned = set()  # (layer, input dtype, weight dtype) already warned about: each once per process


def _check_input_dtype(owner, x, w, what):
    """Warn (vg.DTypeWarning) when NumPy will convert the input x to compute with the float weights w: a
    float32 input and float64 weights compute in float64 (or the other way round), integer pixels are
    converted at every call (and, unscaled, make training unstable)."""
    xd, wd = x.dtype, w.dtype
    if xd == wd or wd.kind != 'f' or (owner, xd, wd) in _dtype_warned:
        return
    if xd.kind == 'f':
        message = (f'{owner}: the input is {xd} but the {what} are {wd}, so NumPy computes in '
                   f'{np.result_type(xd, wd)}, converting at every call. Use one dtype: cast the data, '
                   f'x.astype(np.{wd}), or the model, model.to(np.{xd})')
    elif xd.kind in 'uib':
        message = (f'{owner}: the input is {xd} but the {what} are {wd}: NumPy converts it at every call, and '
                   f'raw 0-255 pixels make training unstable. Cast your data once: x.astype(np.{wd}) / 255 '
                   f'(PyTorch refuses integer inputs to its layers)')
    else:
        return
    _dtype_warned.add((owner, xd, wd))
    _warn(message, DTypeWarning)


# ---- functions ------------------------------------------------------------------------------------------


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D convolution of images x (N, C, H, W) with filters w (O, C, kh, kw) and bias b (O,) (optional):
    (N, O, OH, OW). stride and padding are ints or (rows, columns) pairs."""
    nodes = (x, w) if b is None else (x, w, b)
    return Convolution.do_forward(*nodes, stride=stride, padding=padding)


def max_pool2d(x, kernel_size, stride=None):
    """The maximum of each kernel_size window of x (N, C, H, W); stride defaults to kernel_size."""
    return MaxPooling.do_forward(x, kernel_size=kernel_size, stride=stride)


def avg_pool2d(x, kernel_size, stride=None):
    """The mean of each kernel_size window of x (N, C, H, W); stride defaults to kernel_size."""
    return AvgPooling.do_forward(x, kernel_size=kernel_size, stride=stride)


def dropout(x, p=0.5, training=True):
    """
    In training, zero each element of x with probability p and scale the rest by 1 / (1 - p), so that the
    expected value is unchanged; otherwise return x itself. The mask is drawn with np.random.
    """
    _number('dropout', 'p', p, 0, 1)
    if not training or p == 0:
        return x
    keep = np.random.random_sample(x.value.shape) < 1 - p
    return DropoutMask.do_forward(x, mask=keep, p=p)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """
    Batch normalisation of x (N, C) or (N, C, ...) per channel, as PyTorch's F.batch_norm. In training (or
    when there are no running statistics) x is normalised with the batch's mean and variance, and the running
    statistics (plain arrays of shape (C,)) are updated in place:
        running = (1 - momentum) * running + momentum * batch statistic   (the variance unbiased: * M / (M - 1))
    Otherwise the running statistics are used. weight (gamma) and bias (beta) are TensorNodes of shape (C,);
    None means 1 and 0.
    """
    channels = x.value.shape[1] if x.value.ndim >= 2 else 0
    if x.value.ndim >= 2 and channels == 0:
        raise ValueError(f'batch_norm: the input has no channels (shape {x.value.shape}): nothing to normalise')
    _number('batch_norm', 'eps', eps, 0, low_open=True)
    if training and running_mean is not None:
        _number('batch_norm', 'momentum', momentum, 0, 1)
    dtype = x.value.dtype if x.value.dtype.kind == 'f' else np.float64
    if weight is None:
        weight = TensorNode(np.ones(channels, dtype=dtype))
    if bias is None:
        bias = TensorNode(np.zeros(channels, dtype=dtype))
    if training or running_mean is None:
        y = BatchNormalization.do_forward(x, weight, bias, eps=eps)
        if training and running_mean is not None:
            context = y.source.context
            m = x.value.shape[0] * math.prod(x.value.shape[2:])  # values per channel (also with no channels)
            running_mean[...] = momentum * context['mean'] + (1 - momentum) * running_mean
            running_var[...] = momentum * (context['var'] * (m / (m - 1))) + (1 - momentum) * running_var
        return y
    return BatchNormalization.do_forward(x, weight, bias, running_mean=running_mean, running_var=running_var,
                                         eps=eps)


def reshape(x, shape):
    """x with another shape holding the same number of elements (one entry may be -1)."""
    return Reshape.do_forward(x, shape=tuple(shape))


def flatten(x):
    """A batch (N, ...) as a matrix (N, everything else): the step from convolutions to linear layers."""
    n = x.value.shape[0] if x.value.ndim else 1
    return Reshape.do_forward(x, shape=(n, math.prod(x.value.shape[1:])))


def cross_entropy(logits, targets, reduction='mean'):
    """
    The cross-entropy loss of logits (N, C) (unnormalised scores, as the last linear layer gives them) for the
    integer class targets (N,): the mean (or 'sum') over the rows of -log softmax(logits)[target], computed
    stably in one op. PyTorch's F.cross_entropy.
    """
    if isinstance(targets, TensorNode):
        targets = targets.value
    return CrossEntropy.do_forward(logits, targets=targets, reduction=reduction)


# ---- modules --------------------------------------------------------------------------------------------


def parameter_alias(name, doc):
    """A property that reads and sets the attribute `name`: PyTorch's parameter names (weight, bias) for
    vugrad's (w, b) on the same TensorNode, so code in either style, and state dicts, see one parameter."""
    return property(lambda self: getattr(self, name), lambda self, node: setattr(self, name, node), doc=doc)


class Conv2d(Module):
    """
    A convolution layer with in_channels * out_channels filters of kernel_size and a bias per output channel.
    Weights and biases are drawn uniformly from +-1/sqrt(in_channels * kh * kw), PyTorch's default.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        in_channels = _int('Conv2d', 'in_channels', in_channels, 1)
        out_channels = _int('Conv2d', 'out_channels', out_channels, 1)
        kh, kw = _int_pair('Conv2d', 'kernel_size', kernel_size, 1)
        _int_pair('Conv2d', 'stride', stride, 1)
        _int_pair('Conv2d', 'padding', padding, 0)
        shape = (out_channels, in_channels, kh, kw)
        bound = 1 / math.sqrt(in_channels * kh * kw)
        try:
            w = np.random.uniform(-bound, bound, shape)
        except (ValueError, MemoryError) as e:  # NumPy's message does not say which layer asked
            kind = MemoryError if isinstance(e, MemoryError) else ValueError
            raise kind(f'Conv2d: cannot make filters of shape {shape}: {e}') from e
        self.w = TensorNode(w)
        self.b = TensorNode(np.random.uniform(-bound, bound, out_channels)) if bias else None
        self.stride, self.padding = stride, padding

    _parameter_names = {'w': 'weight', 'b': 'bias'}  # PyTorch's names; `weight` and `bias` read them too

    weight = parameter_alias('w', "The filters (out_channels, in_channels, kh, kw): the same TensorNode as `w`.")
    bias = parameter_alias('b', "The bias (out_channels,), or None: the same as `b`.")

    def forward(self, x):
        return self._convolve(x, Convolution)

    def _convolve(self, x, op):
        """The layer's convolution of x by `op`: Convolution, or ConvolutionReLU (which Sequential uses when a
        ReLU follows the layer)."""
        value, w = _value('Conv2d', x), self.w.value
        if value.dtype is not w.dtype:
            _check_input_dtype('Conv2d', value, w, 'filters')
        nodes = (x, self.w) if self.b is None else (x, self.w, self.b)
        return op.do_forward(*nodes, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        out_channels, in_channels, kh, kw = self.w.value.shape
        text = (f'{in_channels}, {out_channels}, kernel_size={(kh, kw)}, '
                f'stride={_int_pair("Conv2d", "stride", self.stride, 1)}')
        padding = _int_pair('Conv2d', 'padding', self.padding, 0)
        if padding != (0, 0):
            text += f', padding={padding}'
        return text + (', bias=False' if self.b is None else '')


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        _int_pair('MaxPool2d', 'kernel_size', kernel_size, 1)
        if stride is not None:
            _int_pair('MaxPool2d', 'stride', stride, 1)
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x):
        return max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self):
        return f'kernel_size={self.kernel_size}, stride={self.kernel_size if self.stride is None else self.stride}'


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        _int_pair('AvgPool2d', 'kernel_size', kernel_size, 1)
        if stride is not None:
            _int_pair('AvgPool2d', 'stride', stride, 1)
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x):
        return avg_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self):
        return f'kernel_size={self.kernel_size}, stride={self.kernel_size if self.stride is None else self.stride}'


class Dropout(Module):
    """Dropout with probability p in training mode (module.train()); the identity after module.eval().
    p = 1 drops everything (the output and its gradient are zeros), as in PyTorch."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = _number('Dropout', 'p', p, 0, 1)

    def forward(self, x):
        _value('Dropout', x)
        return dropout(x, self.p, self.training)

    def extra_repr(self):
        return f'p={self.p}'


class _BatchNorm(Module):
    """Batch normalisation with a learned scale (weight, ones) and shift (bias, zeros) per channel, and
    running statistics (plain arrays, not parameters) used after module.eval()."""

    dims = ()  # the numbers of input dimensions accepted
    _buffers = ('running_mean', 'running_var')

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        name = type(self).__name__
        num_features = _int(name, 'num_features', num_features, 1)
        _number(name, 'eps', eps, 0, low_open=True)  # 0 divides by zero on a constant channel
        _number(name, 'momentum', momentum, 0, 1)
        self.weight = TensorNode(np.ones(num_features))
        self.bias = TensorNode(np.zeros(num_features))
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)
        self.eps, self.momentum = eps, momentum

    def forward(self, x):
        if _value(type(self).__name__, x).ndim not in self.dims:
            raise ValueError(f'{type(self).__name__}: expected an input with {" or ".join(map(str, self.dims))} '
                             f'dimensions, got shape {x.value.shape}')
        return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                          self.momentum, self.eps)

    def extra_repr(self):
        return f'{self.weight.value.shape[0]}, eps={self.eps}, momentum={self.momentum}'


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs over each of the C features."""
    dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of images (N, C, H, W) over each of the C channels."""
    dims = (4,)


class Flatten(Module):
    """(N, ...) -> (N, everything else)."""

    def forward(self, x):
        _value('Flatten', x)
        return flatten(x)


class Sequential(Module):
    """Layers applied one after the other: modules, op layers such as vg.ReLU() (PyTorch's nn.ReLU()), or plain
    functions of one node such as vg.relu.

    A Conv2d followed by a ReLU (vg.relu or vg.ReLU()) becomes one op, ConvolutionReLU, with the same numbers:
    the convolution's output is seen by nothing else here, so it need not be a node, or a pass over memory of
    its own. Inside `with vg.unfused():` every layer builds its own ops."""

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f'Sequential: layer {i} is a {type(layer).__name__}, not a module or function')
        self.layers = list(layers)

    def forward(self, x):
        layers, i = self.layers, 0
        while i < len(layers):
            if i + 1 < len(layers) and _conv_then_relu(layers[i], layers[i + 1]) and fused():
                x = layers[i]._convolve(x, ConvolutionReLU)
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x

    def _members(self):
        # PyTorch's names: '0', '1', ... (so the parameters are '0.weight', '0.bias', ...)
        for i, layer in enumerate(self.layers):
            yield str(i), layer

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)


def _conv_then_relu(layer, following):
    """Whether Sequential may make the two layers one ConvolutionReLU: a Conv2d whose forward is Conv2d's own (a
    subclass may have changed it), then the ReLU function or op layer."""
    return (isinstance(layer, Conv2d) and type(layer).forward is Conv2d.forward and
            (following is relu or type(following) is ReLU))


__all__ = ['conv2d', 'max_pool2d', 'avg_pool2d', 'dropout', 'batch_norm', 'reshape', 'flatten', 'cross_entropy',
           'Conv2d', 'MaxPool2d', 'AvgPool2d', 'Dropout', 'BatchNorm1d', 'BatchNorm2d', 'Flatten', 'Sequential',
           'to_dtype']
