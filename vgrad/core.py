"""
The core of the autodiff system: the two kinds of node in a computation graph (TensorNode, OpNode), the
Op class that builds the graph, and Module.

This is vugrad's design, kept so that course code runs unchanged: a TensorNode holds a value, an OpNode
records which Op made it from which inputs, and backward() walks the graph from the loss down, handing
each op the gradient over its outputs and adding what it returns to the gradients of its inputs.

Where vgrad differs from vugrad, on purpose:
- backward(), zero_grad() and clear() walk the graph with an explicit stack instead of recursion, so a
  chain of 100,000 ops works (vugrad stops at Python's recursion limit, about 1,000 nested ops), and they
  visit each node once (vugrad's zero_grad revisits shared nodes once per path).
- backward() counts, for each node, the consumers that lie below the loss it was called on, instead of
  every op the node was ever given to. In vugrad a node that also fed a graph which was never cleared
  (say, a validation pass) waits forever for that extra parent, and its gradient silently stops there.
  The order in which ops run is vugrad's: depth first, an op as soon as all its outputs are done.
- An op with several outputs runs its backward once, when all of them are done (vugrad runs it once per
  output, adding the gradients several times).
- grad is allocated when first needed, in the value's float dtype (float64 for integer values); vugrad
  always allocates float64 zeros up front.
- Mistakes raise TypeError/ValueError naming the op and the shapes, never bare asserts (which `python -O`
  removes).
- Opt-outs PyTorch users know: TensorNode(x, requires_grad=False) for a node whose gradient is not wanted,
  and `with vg.no_grad():` (or the decorator @vg.no_grad) to run forward passes (validation) without building
  a graph.
- What else PyTorch users reach for: node.item(), float(node), node.shape/ndim/dtype; print(model),
  named_parameters(), state_dict()/load_state_dict(), model.to(dtype), model.zero_grad() on modules.
- Mistakes students make get a message naming the fix (an array given to a model, an op called as a
  function, a parameter updated with `p = p - lr * p.grad`), and three warnings (vg.VgradWarning) flag
  what otherwise fails silently: backward() with no graph below the node (after clear()), a loss that is NaN
  or infinite, and (in Linear and Conv2d) an input whose dtype NumPy converts on every call.
"""
import collections
import collections.abc
import functools
import numbers
import os
import sys
import threading
import warnings

import numpy as np

from . import _C

_FLOAT64 = np.dtype(np.float64)
_ndarray = np.ndarray  # (one global lookup instead of two, where every node passes)

# This file is compiled by Cython when vgrad is built (core.pxd next to it declares the types; the code is
# this file's, unchanged): for the small tensors of the course's networks the interpreter's cost per graph
# step is most of the time, and compiled, the same algorithm runs about twice as fast. It stays plain Python
# that runs as it is: with VGRAD_PURE_PYTHON=1 in the environment, vgrad imports this file instead of the
# compiled module, to read it in a debugger or a profiler. COMPILED says which one runs.
COMPILED = not __file__.endswith('.py')


def grad_dtype(value):
    """The dtype of a gradient for this value: its own float dtype, float64 for anything else."""
    dtype = value.dtype
    return dtype if dtype.kind == 'f' else _FLOAT64


class _GradMode(threading.local):
    enabled = True  # per thread: no_grad() in one thread does not affect another


_grad_mode = _GradMode()
# How many no_grad() blocks are open, in all threads. Reading a thread-local costs about as much as the rest of
# an op's bookkeeping, so ops read _grad_mode only while some no_grad() is open somewhere.
_no_grad_blocks = 0
_no_grad_lock = threading.Lock()


class no_grad:
    """
    Run forward passes without building a graph, e.g. for validation:

        with vg.no_grad():
            output = model(vg.TensorNode(xval))

    Ops still compute their outputs, but record no OpNode, so nothing needs clear() and nothing is kept
    for backward(). The outputs have requires_grad False. As in PyTorch, it also decorates a function, with
    or without parentheses (`@vg.no_grad` or `@vg.no_grad()`): every call of the function runs without a
    graph.
    """

    def __new__(cls, function=None):
        self = object.__new__(cls)
        self._previous = []  # a stack, so that one instance may be entered again inside itself
        if function is None:
            return self
        if not callable(function):
            raise TypeError(f'no_grad: use it as `with vg.no_grad():`, or as a decorator of a function, not with a '
                            f'{type(function).__name__}')
        return self(function)  # @vg.no_grad, without parentheses

    def __enter__(self):
        global _no_grad_blocks
        self._previous.append(_grad_mode.enabled)
        _grad_mode.enabled = False
        with _no_grad_lock:
            _no_grad_blocks += 1

    def __exit__(self, *exception):
        global _no_grad_blocks
        _grad_mode.enabled = self._previous.pop()
        with _no_grad_lock:
            _no_grad_blocks -= 1
        return False

    def __call__(self, function):
        """@vg.no_grad(): the function, run inside a no_grad() block of its own at every call."""
        @functools.wraps(function)
        def without_grad(*args, **kwargs):
            with no_grad():
                return function(*args, **kwargs)
        return without_grad


# ---- warnings: what otherwise goes wrong silently. Each category can be silenced on its own, or all at once
# with warnings.simplefilter('ignore', vg.VgradWarning).

class VgradWarning(UserWarning):
    """The base class of vgrad's warnings."""


class GraphWarning(VgradWarning):
    """backward() from a node with no graph below it (no op made it, or clear() removed its graph)."""


class NonFiniteWarning(VgradWarning, RuntimeWarning):
    """backward() from a loss that is NaN or infinite."""


class DTypeWarning(VgradWarning):
    """An input whose dtype NumPy converts silently on every call (Linear, Conv2d)."""


_NOTHING = object()
_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '')
_INF = float('inf')


def _warn(message, category):
    """Warn, attributed to the first caller outside vgrad (compiled, core.py has no frames; in Python, and
    modules.py and nn.py, have), so that the warning names the student's line; Python's default filter then
    shows it once for each line."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        level += 1
        frame = frame.f_back
    warnings.warn(message, category, stacklevel=level)


class TensorNode:
    """
    A value node in the computation graph: a tensor (a NumPy array) with a link to the OpNode that
    produced it, and, after backward(), the gradient of the loss with respect to it.
    """

    # Slots make the many small nodes of a graph cheaper to create and read; __dict__ keeps any other
    # attribute you set working, and __weakref__ lets weak references point at nodes.
    __slots__ = ('name', 'value', 'source', '_grad', 'debug', 'numparents', 'visits', 'requires_grad',
                 '__dict__', '__weakref__')

    def __init__(self, value, source=None, name=None, requires_grad=True):
        """
        :param value: A NumPy array. It is kept as it is (not copied or cast), so changing it in place, as an
            optimizer does with `parm.value -= lr * parm.grad`, is seen by the next forward pass. Other
            values (numbers, lists) are turned into arrays with np.asarray.
        :param source: The OpNode that created this TensorNode. Leave it out when you create one yourself.
        :param name: Optional string to help identify the node while debugging.
        :param requires_grad: False for a node whose gradient you don't want (an input batch, say): no
            gradient is computed for it, which saves work, and its .grad stays zero.
        """
        self.name = name
        self.value = value if isinstance(value, _ndarray) else _as_value(value)
        self.source = source
        self._grad = None  # allocated on first use; see the grad property
        self.debug = False
        self.requires_grad = requires_grad

        # These steer the backward traversal, as in vugrad.
        self.numparents = 0  # how many op inputs this node has been given to
        self.visits = 0      # how many times backward has reached this node

    # NumPy hands an ndarray's arithmetic with a node to the node's operators (`array * node` is node.__rmul__),
    # as it does for PyTorch's tensors: so that it fails with the message of the node's own operators rather
    # than producing an array of TensorNodes.
    __array_priority__ = 1000.0

    def __array__(self, dtype=None, copy=None):
        """A TensorNode is not an array: NumPy functions given one fail with a message saying what to use."""
        raise TypeError(_not_an_array_message())

    @property
    def shape(self):
        """The shape of the value (as torch's tensor.shape; vugrad's node.size() gives the same)."""
        return self.value.shape

    @property
    def ndim(self):
        """The number of dimensions of the value."""
        return self.value.ndim

    @property
    def dtype(self):
        """The dtype of the value."""
        return self.value.dtype

    def item(self):
        """The number a one-element node holds (a loss), as a Python number (float for a float node), as
        torch's tensor.item(): e.g. `total += loss.item()`."""
        value = self.value
        if value.size != 1:
            raise ValueError(f'item(): a node with {value.size} elements (shape {value.shape}) cannot be converted '
                             f'to a Python number; only a node holding one number can (a loss). For the array, '
                             f'take node.value')
        return value.item()

    def __float__(self):
        value = self.value
        if value.size != 1:
            raise ValueError(f'float(): only a node holding one number converts to a float, and this one has shape '
                             f'{value.shape}; for the array, take node.value')
        return float(value.item())

    def __format__(self, format_spec):
        """f'{loss:.4f}' formats the number a one-element node holds (f'{loss}' too when it is 0-d, as for
        torch's tensors); other nodes format as their str()."""
        value = self.value
        if value.ndim == 0 or (format_spec and value.size == 1):
            return format(value.item(), format_spec)
        if format_spec:
            raise TypeError(f'format: {format_spec!r} formats a number, but this node holds an array of shape '
                            f'{value.shape}: format node.value, or a number from it')
        return str(self)

    @property
    def grad(self):
        """
        The gradient of the loss with respect to this node's value: an array of the value's shape and float
        dtype. At element `index` it holds the derivative of the loss with respect to `value[index]`. It is
        zero until backward() reaches this node.
        """
        if self._grad is None:
            self._grad = _C.cached_zeros(self.value.shape, grad_dtype(self.value))  # np.zeros; memory.py says why
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = value

    def size(self, dim=None):
        """The shape of the value as a tuple, or the size of dimension `dim`."""
        if dim is None:
            return self.value.shape
        return self.value.shape[dim]

    def backward(self, start=True):
        """
        Backpropagate from this node, which must hold a single number (the loss). Afterwards every node
        below it holds in .grad the derivative of this node with respect to its value.

        The gradients of leaves (parameters and inputs: nodes no op produced) are added to what is already in
        their .grad, so call zero_grad() between steps; calling backward() twice on one graph adds them twice.
        The gradients of intermediate nodes are recomputed by each backward() (as in PyTorch). After clear()
        the graph below is gone, and backward() only sets this node's own gradient (with a vg.GraphWarning). A
        loss that is NaN or infinite gives a vg.NonFiniteWarning. `start` is accepted for compatibility with
        vugrad, where backward(start=False) was the internal recursive call; it has no effect.
        """
        if self.value.size != 1:
            raise ValueError(
                f'backward() can only start from a node holding a single number (a scalar loss), but this '
                f'node has shape {self.value.shape}. Reduce it first, e.g. with vg.Sum.do_forward(node).')
        if not self.requires_grad:
            raise ValueError('backward(): this node was computed without a graph (inside vg.no_grad(), or '
                             'from inputs that all have requires_grad=False), so there is nothing to backpropagate')
        if self.source is None:
            _warn('backward() from a node with no graph below it: no op made it, or clear() removed its graph. '
                  'Only this node\'s own gradient is set; no parameter gets a gradient. Call loss.backward() '
                  'before loss.clear()', GraphWarning)
        loss = self.value.item()
        if type(loss) is float and not -_INF < loss < _INF:
            _warn_non_finite(loss)
        self._grad = grad = np.empty(self.value.shape, dtype=grad_dtype(self.value))
        grad.fill(1.0)  # d loss / d loss (np.ones takes several times as long for one number)
        _backpropagate(self)

    def zero_grad(self):
        """
        Set the gradient to zero for this node and every node below it. The gradient arrays are dropped
        rather than filled with zeros: .grad reads as zeros until the next backward(), which then stores its
        result directly instead of adding it to zeros (PyTorch's zero_grad(set_to_none=True) does the same).
        Keep no reference to an old .grad array across zero_grad() if you expect it to change.
        """
        _zero_grad(self)

    def clear(self):
        """
        Disconnect the computation graph below this node and reset the traversal counters, so that
        nothing keeps the graph alive and the garbage collector can free it. Nodes that are still
        referenced elsewhere (a module's parameters) survive, with their values and gradients.
        """
        _clear(self)

    # Operators, so that TensorNodes can be combined as numbers are. A Python number on either side is
    # wrapped in a node of the same shape and float dtype as the other operand. (Add, Sub, ... are the ops of
    # ops.py, which hands them to this module: see below TensorNode.)
    def __add__(self, other):
        return Add.do_forward(self, _as_node(other, self))

    def __radd__(self, other):
        return Add.do_forward(_as_node(other, self), self)

    def __sub__(self, other):
        return Sub.do_forward(self, _as_node(other, self))

    def __rsub__(self, other):
        return Sub.do_forward(_as_node(other, self), self)

    def __mul__(self, other):
        return Multiply.do_forward(self, _as_node(other, self))

    def __rmul__(self, other):
        return Multiply.do_forward(_as_node(other, self), self)

    def __truediv__(self, other):
        return Div.do_forward(self, _as_node(other, self))

    def __rtruediv__(self, other):
        return Div.do_forward(_as_node(other, self), self)

    def __neg__(self):
        return self * -1.0

    def matmul(self, other):
        return MatrixMultiply.do_forward(self, other)

    def __matmul__(self, other):
        return MatrixMultiply.do_forward(self, other)

    def __str__(self):
        n = self.name + ', ' if self.name is not None else ''
        return f'TensorNode[{n}size {self.size()}, source {self.source.op if self.source is not None else None}].'

    def _repr_mimebundle_(self, include=None, exclude=None):
        """In Jupyter a node shows the graph below it (SVG with Graphviz installed, else a text tree)."""
        return _mimebundle(self, include, exclude)

    def __repr__(self):
        n = f'{self.name!r}, ' if self.name is not None else ''
        op = self.source.op.__name__ if self.source is not None else None
        return f'TensorNode({n}shape={self.value.shape}, dtype={self.value.dtype}, source={op})'


def _as_node(other, like):
    """`other` as a TensorNode: nodes pass through, numbers become a constant shaped like `like`."""
    if isinstance(other, TensorNode):
        return other
    if isinstance(other, numbers.Number) and not isinstance(other, complex):
        return TensorNode(np.full(like.value.shape, other, dtype=grad_dtype(like.value)))
    raise TypeError(_combine_message(other, like))


# ---- the messages of mistakes students make (built only when the mistake happens)

def _type_name(obj):
    """'numpy.ndarray', 'list', 'torch.Tensor': the type of obj as a student would write it."""
    cls = type(obj)
    module = cls.__module__
    if module == 'builtins':
        return cls.__qualname__
    return f'{module.split(".")[0]}.{cls.__qualname__}'


def _combine_message(other, like):
    """TensorNode <op> something that is neither a node nor a number."""
    what = _type_name(other)
    if isinstance(other, np.ndarray):
        update = 'to update a parameter, update p.value in place: p.value -= lr * p.grad'
        wrap = 'to use the array in the graph, wrap it: vg.TensorNode(array)'
        first, second = (update, wrap) if like.source is None else (wrap, update)
        return f'cannot combine a TensorNode with a {what}: {first} ({second})'
    return (f'cannot combine a TensorNode with a {what}: TensorNodes combine with TensorNodes and numbers; wrap '
            f'arrays in vg.TensorNode')


def _as_value(value):
    """TensorNode(value) for a value that is not an ndarray: a number or a list, as an array."""
    if isinstance(value, TensorNode):
        raise TypeError('TensorNode(value): the value is a TensorNode already; use that node itself, or '
                        'TensorNode(node.value) for a new node with the same array')
    return np.asarray(value)


def _not_an_array_message():
    """TensorNode.__array__: NumPy was given a node where it needs an array. If that happened inside an op's
    forward or backward (a student calling Sigmoid.forward(ctx, node), say), name the op and do_forward."""
    frame = sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR) and \
            frame.f_code.co_name not in ('forward', 'backward'):
        frame = frame.f_back
    code = frame.f_code if frame is not None else None
    if code is not None and code.co_name in ('forward', 'backward') and code.co_varnames[:1] not in (('self',),
                                                                                                  ('cls',)):
        owner = getattr(code, 'co_qualname', code.co_name).rsplit('.', 1)[0]
        if '<locals>.' in owner:
            owner = owner.rsplit('<locals>.', 1)[1]
        if code.co_name == 'forward':
            return (f'{owner}.forward takes arrays (node.value), not TensorNodes; to apply the op to TensorNodes '
                    f'use {owner}.do_forward(node)')
        return (f'{owner}.backward takes arrays (the gradients over the outputs), not TensorNodes; '
                f'loss.backward() calls it for you')
    return ('NumPy needs an array here, but got a TensorNode: use node.value for its array (node.item() for the '
            'number a one-element node holds)')


def _warn_non_finite(loss):
    _warn(f'backward(): the loss is {loss}, so every gradient will be too. Check the learning rate (too large '
          f'makes the weights blow up), the inputs (raw 0-255 pixels: divide by 255), and logs of 0 (use '
          f'logsoftmax and logceloss rather than the log of softmax)', NonFiniteWarning)


def _not_a_node_error(message, given):
    """A TypeError about an input that should be a TensorNode and is not (`given`). Module.__call__ renames it
    after the outermost module that was given that input, the one the student called."""
    error = TypeError(message)
    error.not_a_node = given
    return error


def _not_a_node(owner, given, where='the input'):
    """The error for a module given something that is not a TensorNode (a NumPy array, usually)."""
    what = _type_name(given)
    wrap = 'vg.TensorNode(x.detach().numpy())' if what.startswith('torch.') else 'vg.TensorNode(x)'
    return _not_a_node_error(f'{owner}: {where} is a {what}, not a TensorNode: wrap it: model({wrap})', given)


# The two things TensorNode uses from modules that build on this one, which this module therefore does not
# import: each of those modules puts its part here when it is imported (importing vgrad imports both), and the
# methods above look them up when they run, as fast as any global.
#
# The ops behind the operators + - * / @, from the end of ops.py. (vugrad defined Add, Sub, Multiply and
# MatrixMultiply in its core.py, so course code's `from vugrad.core import Add` finds them here too.)
Add = Sub = Multiply = Div = MatrixMultiply = None


def _mimebundle(node, include, exclude):
    """What Jupyter shows for a node: graph_draw.py replaces this with its picture of the graph."""
    return None


class OpNode:
    """
    One application of an Op to some inputs: the diamond node in a computation graph. It remembers the op,
    the context the op's forward filled in, and the input and output TensorNodes.
    """

    __slots__ = ('op', 'context', 'inputs', 'outputs', 'visits', '__dict__', '__weakref__')

    def __init__(self, op, context, inputs):
        self.op = op
        self.context = context
        self.inputs = inputs
        self.outputs = None
        self.visits = 0

    def __repr__(self):
        return f'OpNode({self.op.__name__}, {len(self.inputs or ())} inputs)'


def _nodes_below(top):
    """Every TensorNode in the graph below `top` (itself included), each once, found without recursion."""
    seen = {top}
    stack = [top]
    found = []
    while stack:
        node = stack.pop()
        found.append(node)
        source = node.source
        if source is not None and source.inputs is not None:
            for parent in source.inputs:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
    return found


def _zero_grad(top):
    """TensorNode.zero_grad: every node below `top` drops its gradient (it reads as zeros)."""
    for node in _nodes_below(top):
        node._grad = None


def _clear(top):
    """TensorNode.clear: cut every link of the graph below `top` and reset the traversal counters."""
    for node in _nodes_below(top):
        source = node.source
        if source is not None:
            source.inputs = None
            source.outputs = None
            node.source = None
        node.visits = node.numparents = 0


def _backpropagate(loss):
    """
    vugrad's traversal without recursion. In vugrad, TensorNode.backward() counts a visit and, once the node
    has been visited by all its parents, calls backward() on its source OpNode; the OpNode computes the
    gradients over its inputs, adds them to their .grad, and then calls backward() on each input in turn.
    Here the nodes waiting for their visit are an explicit stack, which reproduces vugrad's depth-first
    order exactly.

    The parent counts come from a first pass over the graph below the loss, so consumers outside it (a
    forward pass that was never cleared) do not block the traversal. Nodes with requires_grad False are
    left out: no gradient flows into or through them.
    """
    # Pass 1: for every node below the loss, count the op inputs (below the loss) it is given to; for every
    # op, count its outputs that are part of the graph below the loss. Forget the intermediate nodes' old
    # gradients on the way.
    waiting_parents = {}
    waiting_outputs = {}
    stack = [loss]
    while stack:
        op = stack.pop().source
        if op is None or op.inputs is None:
            continue
        count = waiting_outputs.get(op)
        if count is not None:
            waiting_outputs[op] = count + 1
            continue
        waiting_outputs[op] = 1
        for parent in op.inputs:
            if parent.requires_grad:
                count = waiting_parents.get(parent, 0)
                waiting_parents[parent] = count + 1
                if count == 0:
                    stack.append(parent)
                    if parent.source is not None:
                        parent._grad = None  # intermediate gradients start afresh; leaves accumulate

    # Pass 2: vugrad's visiting logic. A visit to a node counts down its waiting parents; the last one is
    # a visit to its source op, which counts down the op's waiting outputs; the last of those runs the op's
    # backward and then visits the op's inputs in order, each visit (and everything it sets off) before
    # the next. The nodes waiting for their visit are a stack, the op's inputs pushed in reverse so that
    # the first input is visited first: vugrad's recursion, depth first, without recursion.
    pending = [loss]
    while pending:
        node = pending.pop()
        node.visits += 1
        if node is not loss:
            waiting_parents[node] -= 1
            if waiting_parents[node] != 0:
                continue
        op = node.source
        if op is None or op.inputs is None:
            continue
        op.visits += 1
        waiting_outputs[op] -= 1
        if waiting_outputs[op] == 0:
            _run_backward(op)
            for parent in reversed(op.inputs):
                if parent.requires_grad:
                    pending.append(parent)


def _count(n, noun):
    return f'{n} {noun}' if n == 1 else f'{n} {noun}s'


def _run_backward(opnode):
    """Call the op's backward on the gradients over its outputs and add the results to its inputs' grads."""
    op = opnode.op
    outputs = opnode.outputs
    if len(outputs) == 1:
        ginputs = op.backward(opnode.context, outputs[0].grad)
    else:
        ginputs = op.backward(opnode.context, *[output.grad for output in outputs])
    inputs = opnode.inputs
    if ginputs is None:
        raise ValueError(f'{op.__name__}.backward returned None: did you forget `return`? (To say that no '
                         f'gradient flows to an input, put None for it in a tuple, one entry per input.)')
    if type(ginputs) is not tuple:
        ginputs = tuple(ginputs) if isinstance(ginputs, list) else (ginputs,)
    if len(ginputs) != len(inputs):
        raise ValueError(f'{op.__name__}.backward returned {_count(len(ginputs), "gradient")}, but the op has '
                         f'{_count(len(inputs), "input")}: return one gradient per input, in order')
    fresh = op.backward_returns_new_arrays
    for i, node in enumerate(inputs):
        grad = ginputs[i]
        if grad is None or not node.requires_grad:
            continue  # the op declares that no gradient flows there, or none is wanted
        if type(grad) is not _ndarray:
            if not isinstance(grad, (np.ndarray, numbers.Number, np.generic, list)):
                raise TypeError(f'{op.__name__}.backward returned a {type(grad).__name__} for input {i}, not an '
                                f'array')
            grad = np.asarray(grad)  # a number, a list, or an array of a subclass (np.matrix...) as an array
        value = node.value
        if grad.shape != value.shape:
            raise ValueError(f'{op.__name__}.backward returned a gradient of shape {grad.shape} for input {i}, '
                             f'which has shape {value.shape}: they must be equal')
        current = node._grad
        if current is None:
            # The first contribution: keep the array itself if it belongs to nobody else, else copy it, in C
            # order: the layout of vugrad's gradients (np.zeros plus the contributions), which the ops'
            # backward then receive, and whose order their sums follow.
            dtype = grad_dtype(value)
            if fresh and grad.dtype == dtype and grad.flags.c_contiguous:
                node._grad = grad
            else:
                node._grad = _C.cached_copy(grad, dtype)  # np.array(grad, dtype, order='C'); memory.py says why
        else:
            node._grad = _C.add_into(current, grad)  # current += grad, in C: NumPy's += costs more than the sum
            # -- adding to what is there implements the multivariate chain rule: every op that uses a node
            #    adds its part of the gradient.


class Op:
    """
    An operation: a forward that computes outputs from input arrays and a backward that computes the
    gradients over the inputs from the gradients over the outputs. Ops are never instantiated: they are
    classes with static methods, and Op.do_forward applies one to TensorNodes and records it in the graph.

    To write your own, subclass Op and define
        @staticmethod
        def forward(context, *inputs, **kwargs): ...     # raw NumPy arrays in, array(s) out
        @staticmethod
        def backward(context, *goutputs): ...            # one gradient per input, in order
    Anything backward needs from the forward pass goes into the dict `context`.
    """

    def __new__(cls, *args, **kwargs):
        # vg.Sigmoid(x): a student calling the op like a function. (vg.ReLU(), without arguments, is an op as a
        # layer, for vg.Sequential: calling it applies the op.) A subclass with an __init__ of its own takes
        # what that __init__ takes.
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError(_op_called_message(cls, args, kwargs))
        return object.__new__(cls)

    def __call__(self, *inputs, **kwargs):
        """An op instance, vg.ReLU(), is a layer: calling it applies the op, as ReLU.do_forward(*inputs)."""
        return _apply(type(self), inputs, kwargs)

    def __repr__(self):
        return f'{type(self).__name__}()'

    # True when backward always returns new arrays, distinct from each other, that nothing else refers to;
    # the graph may then keep them as gradients instead of copying. Only built-in ops that guarantee it set
    # this.
    backward_returns_new_arrays = False

    @classmethod
    def do_forward(cls, *inputs, **kwargs):
        """
        Apply the op to TensorNodes: unwrap their values, run forward() on them, and wrap the result(s) in
        new TensorNodes whose source is a new OpNode. Keyword arguments are constants passed to forward()
        as they are (no gradient is computed for them).

        :return: one TensorNode, or a list of them if forward() returns a tuple.
        """
        return _apply(cls, inputs, kwargs)

    # The two methods below are what a subclass defines, as static methods. Here they are class methods
    # only so that the error for a missing one can name the op.
    @classmethod
    def forward(cls, context, *inputs, **kwargs):
        """
        Compute the output(s) from the input arrays (raw NumPy arrays, not TensorNodes).

        :param context: a dict in which to keep what backward() will need.
        :param kwargs: constants; no gradient is computed for them.
        """
        raise NotImplementedError(f'{cls.__name__} must define forward(context, *inputs) as a static method')

    @classmethod
    def backward(cls, context, *goutputs):
        """
        Compute the gradients of the loss over the inputs from its gradients over the outputs.

        Note that this is not just the local derivative: it is the derivative of the loss (the node on which
        backward() was called) with respect to every element of each input.

        :param goutputs: the gradients over the outputs, raw arrays of the outputs' shapes.
        :return: one gradient per input (a tuple if there are several), each of that input's shape.
        """
        raise NotImplementedError(f'{cls.__name__} must define backward(context, *goutputs) as a static method')


def _op_called_message(cls, args, kwargs):
    """vg.Sigmoid(x): what to write instead."""
    name = cls.__name__
    ours = cls.__module__.startswith('vgrad.')
    prefix = 'vg.' if ours else ''
    if not args:
        settings = ', '.join(f'{key}=...' for key in kwargs)
        return (f'{name}() takes no arguments: an op has no settings; constants go to do_forward with the input: '
                f'{prefix}{name}.do_forward(x, {settings})')
    function = None
    if ours:
        import vgrad
        candidate = getattr(vgrad, name.lower(), None)
        if callable(candidate) and not isinstance(candidate, type):
            function = f'vg.{name.lower()}'
    inputs = ', '.join('x' if len(args) == 1 else f'x{i}' for i in range(len(args)))
    fix = f'{prefix}{name}.do_forward({inputs})' + (f' or {function}({inputs})' if function else '')
    return (f'{name} is an op, not a function: use {fix}. (Ops are classes with static methods; {prefix}{name}() '
            f'without arguments is a layer for vg.Sequential)')


def _apply(cls, inputs, kwargs):
    """Op.do_forward: run the op's forward on the values of `inputs` and record it in the graph."""
    # (Plain loops and explicit single-input/-output cases below, not comprehensions: this runs for every op,
    #  and a comprehension creates a function object on every call in Python 3.11.)
    tracked = untracked = False
    values = []
    for given in inputs:
        if not isinstance(given, TensorNode):
            raise _not_a_node_error(f'{cls.__name__}: input {len(values)} has type {type(given).__name__}, but all '
                                    f'inputs to an op must be TensorNodes (wrap arrays with vg.TensorNode(array); '
                                    f'constants such as dim=... go in keyword arguments)', given)
        node = given
        if node.requires_grad:
            tracked = True
        else:
            untracked = True
        values.append(node.value)
    context = {}
    if tracked and untracked:
        # Tell the op which gradients are wanted, so that its backward may skip the others (as PyTorch's
        # ctx.needs_input_grad). Ops that don't look still work: their extra gradients are dropped.
        context['needs_input_grad'] = tuple([node.requires_grad for node in inputs])
    forward = cls.forward
    if kwargs:
        outputs_raw = forward(context, *values, **kwargs)
    elif len(values) == 1:  # the usual cases spelled out: no tuple of arguments to build
        outputs_raw = forward(context, values[0])
    elif len(values) == 2:
        outputs_raw = forward(context, values[0], values[1])
    else:
        outputs_raw = forward(context, *values)
    several = type(outputs_raw) is tuple
    node_class = _node_class

    if not tracked or (_no_grad_blocks and not _grad_mode.enabled):
        # No gradient wanted (vg.no_grad(), or no input requires one): the outputs are plain values, returned
        # as with a graph (one node, or a list of them when forward returns a tuple of two or more).
        if not several:
            return node_class(outputs_raw, requires_grad=False)
        outputs = [node_class(output, requires_grad=False) for output in outputs_raw]
        return outputs if len(outputs) != 1 else outputs[0]

    # Count the parents only once forward has succeeded, so a failed op leaves the graph untouched.
    for node in inputs:
        node.numparents += 1

    opnode = OpNode(cls, context, inputs)
    if not several:  # one output, the usual case
        output = node_class(outputs_raw, opnode)
        opnode.outputs = [output]
        return output
    outputs = [node_class(output, opnode) for output in outputs_raw]
    opnode.outputs = outputs
    return outputs if len(outputs) != 1 else outputs[0]


# The class of the nodes that ops create: TensorNode. (vgrad.overlay replaces it by a subclass that carries
# the methods a student added to their own TensorNode, so that the outputs of ops have them too.)
_node_class = TensorNode


class Module:
    """
    A module combines parameter TensorNodes with a method computing a function of them from ops.
    Modules have a forward() but no backward(): the ops it uses each have their own backward, and the
    graph takes care of the rest.

    parameters() finds the parameters by itself: every leaf TensorNode (one no op produced) held in an
    attribute, and the parameters of every submodule, also inside lists, tuples and dicts, in the order
    the attributes were set. A subclass that defines parameters() itself, as the course code does, keeps
    its own. train() and eval() switch modules whose forward differs between training and evaluation
    (dropout, batch norm), submodules included.

    What PyTorch's nn.Module offers, by the same names: print(model) shows the tree of modules;
    named_parameters(), named_children(), named_modules(); state_dict() and load_state_dict() (names from the
    attributes, e.g. 'layer1.weight'; see vg.save and vg.load to keep them in a file); to(dtype), float(),
    double(); zero_grad().
    """

    training = True  # a class default, so subclasses that never call super().__init__() still have it

    # Array attributes (not parameters) that are part of the module's state: state_dict() saves them and
    # load_state_dict() restores them (batch norm's running statistics; torch's register_buffer).
    _buffers = ()
    # Parameter attributes that state_dict() and named_parameters() call by another name: Linear and Conv2d
    # keep vugrad's attributes w and b, and name them weight and bias, as PyTorch does.
    _parameter_names = {}

    def __init__(self):
        self.training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'{type(self).__name__} must define forward()')

    # Calling the module calls forward(), as in PyTorch: `mlp(x)` is `mlp.forward(x)`.
    def __call__(self, *args, **kwargs):
        try:
            return self.forward(*args, **kwargs)
        except (TypeError, AttributeError) as error:
            # An input that is not a TensorNode (a NumPy array): if it is one this module was given, say so
            # in this module's name. The outermost module given it, the one the student called, has the last
            # word.
            renamed = _renamed_input_error(self, args, kwargs, error) if isinstance(error, TypeError) else None
            if renamed is None:
                _note_array_input(self, args, kwargs, error)
                raise
            raise renamed from None

    def parameters(self):
        """
        The parameter TensorNodes of this module and its submodules, each once: the nodes kept between
        steps and updated by learning.
        """
        found, seen = [], set()
        for value in vars(self).values():
            for node in _parameters_in(value):
                if node not in seen:
                    seen.add(node)
                    found.append(node)
        return found

    def modules(self):
        """This module and all modules below it, each once, parents before children."""
        found, seen, stack = [], set(), [self]
        while stack:
            module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            found.append(module)
            children = [m for value in vars(module).values() for m in _modules_in(value)]
            stack.extend(reversed(children))
        return found

    def train(self, mode=True):
        """Put this module and its submodules in training mode (or evaluation mode if mode is False)."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self):
        """Put this module and its submodules in evaluation mode: the same as train(False)."""
        return self.train(False)

    # ---- names, as PyTorch gives them ---------------------------------------------------------------------

    def _members(self):
        """(name, value) for what this module is made of, in the order the attributes were set: parameters
        (leaf TensorNodes), buffers, submodules and op layers (vg.ReLU()); lists, tuples and dicts of them
        give names such as 'layers.0'. Sequential names its layers '0', '1', ..."""
        names, buffers = self._parameter_names, self._buffers
        for name, value in vars(self).items():
            if name in buffers:
                if isinstance(value, np.ndarray):
                    yield name, value
            else:
                yield from _members_in(names.get(name, name), value)

    def named_children(self):
        """(name, module) for the modules directly below this one, op layers (vg.ReLU()) included: PyTorch
        lists its nn.ReLU() there too."""
        for name, value in self._members():
            if isinstance(value, (Module, Op)):
                yield name, value

    def named_modules(self, prefix=''):
        """(name, module) for this module ('') and every module below it, each once, parents first."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            if not isinstance(module, Module):
                continue  # an op layer: nothing below it
            children = [(f'{name}.{child}' if name else child, sub) for child, sub in module.named_children()]
            stack.extend(reversed(children))

    def named_parameters(self, prefix=''):
        """
        (name, parameter) for every parameter of this module and the modules below it, each once, e.g.
        ('layer1.weight', node): the names state_dict() uses.
        """
        seen = set()
        for name, value in _named_state(self, prefix):
            if isinstance(value, TensorNode) and value not in seen:
                seen.add(value)
                yield name, value

    def state_dict(self):
        """
        The module's state as an ordered dict of names to arrays: every parameter's value and every buffer
        (batch norm's running statistics), under the names of named_parameters(). The arrays are copies, so
        the dict is a snapshot (PyTorch's share memory with the model). Save it with vg.save(sd, path), or
        np.savez(path, **sd).
        """
        state = collections.OrderedDict()
        for name, value in _named_state(self, ''):
            state[name] = np.array(value.value if isinstance(value, TensorNode) else value)
        return state

    def load_state_dict(self, state_dict, strict=True):
        """
        Copy the arrays of a state dict (from state_dict(), vg.load or np.load) into this module's parameters
        and buffers, in place, cast to their dtypes. With strict=True, the names must be exactly those of
        state_dict(); with strict=False, missing and unexpected names are returned rather than refused. The
        shapes must match. Everything is checked before anything changes (PyTorch may load a part and then
        fail). Returns (missing_keys, unexpected_keys), as PyTorch does; the errors are PyTorch's too.
        """
        if not isinstance(state_dict, collections.abc.Mapping):
            raise TypeError(f'Expected state_dict to be dict-like, got {type(state_dict)}.')
        targets = collections.OrderedDict(_named_state(self, ''))
        missing = [name for name in targets if name not in state_dict]
        unexpected = [name for name in state_dict if name not in targets]
        errors, arrays = [], []
        for name, target in targets.items():
            if name not in state_dict:
                continue
            given = state_dict[name]
            array = given.value if isinstance(given, TensorNode) else np.asarray(given)
            current = target.value if isinstance(target, TensorNode) else target
            if array.dtype.kind not in 'biuf':
                errors.append(f'While copying the parameter named "{name}", expected a NumPy array of numbers from '
                              f'checkpoint but received {type(given)}')
            elif array.shape != current.shape:
                errors.append(f'size mismatch for {name}: copying a param with shape {array.shape} from checkpoint, '
                              f'the shape in current model is {current.shape}.')
            else:
                arrays.append((target, array))
        if strict:
            if unexpected:
                errors.insert(0, 'Unexpected key(s) in state_dict: {}. '.format(', '.join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, 'Missing key(s) in state_dict: {}. '.format(', '.join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError('Error(s) in loading state_dict for {}:\n\t{}'.format(type(self).__name__,
                                                                                    '\n\t'.join(errors)))
        for target, array in arrays:
            if isinstance(target, TensorNode):
                if target.value.flags.writeable:
                    target.value[...] = array
                else:
                    target.value = np.array(array, dtype=target.value.dtype)
            else:
                target[...] = array
        return IncompatibleKeys(missing, unexpected)

    # ---- dtype, gradients ----------------------------------------------------------------------------------

    def to(self, dtype):
        """
        Cast the parameters (and float buffers) of this module and the modules below it to dtype, in place,
        and return the module, as PyTorch's model.to(torch.float32): `model = vg.MLP(784, 10).to(np.float32)`.
        vgrad computes in float32 when the data is float32 too. A device, 'cpu', is accepted and changes
        nothing (vgrad computes on the CPU).
        """
        if isinstance(dtype, str) and dtype.split(':')[0] in ('cpu', 'cuda', 'mps', 'xpu'):
            if dtype.split(':')[0] != 'cpu':
                raise ValueError(f'{type(self).__name__}.to({dtype!r}): vgrad computes on the CPU only')
            return self
        wanted = np.dtype(dtype)
        if wanted.kind != 'f':
            raise TypeError(f'{type(self).__name__}.to only accepts floating point dtypes, but got desired '
                            f'dtype={wanted}')
        return to_dtype(self, wanted)

    def float(self):
        """Cast to float32 (PyTorch's model.float()); returns the module."""
        return self.to(np.float32)

    def double(self):
        """Cast to float64 (PyTorch's model.double()); returns the module."""
        return self.to(np.float64)

    def zero_grad(self):
        """Drop the gradients of all parameters (they read as zeros until the next backward()), as PyTorch's
        model.zero_grad(); loss.zero_grad() and optimizer.zero_grad() do the same."""
        for node in self.parameters():
            node.grad = None

    # ---- print(model) --------------------------------------------------------------------------------------

    def extra_repr(self):
        """The settings shown inside the parentheses of print(module): e.g. 'in_features=2, out_features=8'."""
        return ''

    def __repr__(self):
        # PyTorch's layout, so that print(model) reads the same as there.
        extra = self.extra_repr()
        extra_lines = extra.split('\n') if extra else []
        child_lines = [f'({name}): {_indented(_layer_repr(value))}' for name, value in self._members()
                       if not isinstance(value, (TensorNode, np.ndarray))]
        lines = extra_lines + child_lines
        text = type(self).__name__ + '('
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                text += extra_lines[0]
            else:
                text += '\n  ' + '\n  '.join(lines) + '\n'
        return text + ')'


def to_dtype(module, dtype):
    """
    Cast the parameters of a module and its submodules (and float arrays they keep, such as batch norm's
    running statistics) to dtype, in place; returns the module. vgrad computes in float32 when all inputs
    are float32: `vg.to_dtype(net, np.float32)` with float32 data trains as PyTorch's default does.
    """
    dtype = np.dtype(dtype)
    for node in module.parameters():
        node.value = node.value.astype(dtype)
        node.grad = None  # reallocated, in the new dtype, when next needed
    for sub in module.modules():
        for name, value in vars(sub).items():
            if isinstance(value, np.ndarray) and value.dtype.kind == 'f':
                setattr(sub, name, value.astype(dtype))
    return module


class IncompatibleKeys(collections.namedtuple('IncompatibleKeys', ['missing_keys', 'unexpected_keys'])):
    """What load_state_dict(strict=False) did not match, as in PyTorch."""

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return '<All keys matched successfully>'
        return super().__repr__()

    __str__ = __repr__


def _members_in(name, value):
    """Module._members for one attribute: a node, module or op layer as it is; containers item by item."""
    if isinstance(value, TensorNode):
        if value.source is None:
            yield name, value
    elif isinstance(value, (Module, Op)):
        yield name, value
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _members_in(f'{name}.{i}', item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _members_in(f'{name}.{key}', item)


def _named_state(module, prefix):
    """(name, parameter or buffer array) below a module, depth first in the order of its members."""
    for name, value in module._members():
        full = f'{prefix}.{name}' if prefix else name
        if isinstance(value, Module):
            yield from _named_state(value, full)
        elif isinstance(value, (TensorNode, np.ndarray)):
            yield full, value


def _layer_repr(layer):
    """How print(model) shows a layer: a module or op layer as its repr, a function (in Sequential) by name."""
    if isinstance(layer, (Module, Op)):
        return repr(layer)
    return getattr(layer, '__qualname__', None) or repr(layer)


def _indented(text):
    """Every line but the first indented by two spaces (PyTorch's _addindent)."""
    return text.replace('\n', '\n  ')


def _renamed_input_error(module, args, kwargs, error):
    """Module.__call__: the error naming `module`, if what was not a TensorNode is one of its own inputs."""
    given = getattr(error, 'not_a_node', _NOTHING)
    if given is _NOTHING:
        return None
    for i, arg in enumerate(args):
        if arg is given:
            where = 'the input' if len(args) == 1 and not kwargs else f'input {i}'
            return _not_a_node(type(module).__name__, given, where)
    for key, arg in kwargs.items():
        if arg is given:
            return _not_a_node(type(module).__name__, given, f'the argument {key}')
    return None


def _note_array_input(module, args, kwargs, error):
    """Module.__call__: a module's own code failed on an input that is an array, not a TensorNode (vugrad's
    Linear calls input.size(), which for an ndarray is an int: "'int' object is not callable"). The error
    stays as it is, with a note naming the likely cause; the outermost module's note replaces its inner
    modules'. (Exception notes exist from Python 3.11 on.)"""
    if not hasattr(error, 'add_note'):
        return
    for given in (*args, *kwargs.values()):
        if isinstance(given, (np.ndarray, list)) or _type_name(given) == 'torch.Tensor':
            break
    else:
        return
    wrap = 'vg.TensorNode(x.detach().numpy())' if _type_name(given) == 'torch.Tensor' else 'vg.TensorNode(x)'
    note = (f'{type(module).__name__} was given a {_type_name(given)}, not a TensorNode: if it computes with '
            f'TensorNodes, wrap it: model({wrap})')
    notes = getattr(error, '__notes__', None)
    index = getattr(error, '_vgrad_note', None)
    if notes is not None and index is not None and index < len(notes):
        notes[index] = note
        return
    error.add_note(note)
    error._vgrad_note = len(error.__notes__) - 1


def _modules_in(value):
    """The modules directly inside an attribute value: itself, or the items of a list, tuple or dict."""
    if isinstance(value, Module):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, Module)]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, Module)]
    return []


def _parameters_in(value):
    """The parameters inside an attribute value: a leaf TensorNode, a module's, or those in a container."""
    if isinstance(value, TensorNode):
        return [value] if value.source is None else []
    if isinstance(value, Module):
        return value.parameters()
    if isinstance(value, (list, tuple)):
        return [node for item in value for node in _parameters_in(item)]
    if isinstance(value, dict):
        return [node for item in value.values() for node in _parameters_in(item)]
    return []
