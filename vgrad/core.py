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
  and `with vg.no_grad():` to run forward passes (validation) without building a graph.
"""
import contextlib
import numbers
import threading

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


@contextlib.contextmanager
def no_grad():
    """
    Run forward passes without building a graph, e.g. for validation:

        with vg.no_grad():
            output = model(vg.TensorNode(xval))

    Ops still compute their outputs, but record no OpNode, so nothing needs clear() and nothing is kept
    for backward(). The outputs have requires_grad False.
    """
    global _no_grad_blocks
    previous = _grad_mode.enabled
    _grad_mode.enabled = False
    with _no_grad_lock:
        _no_grad_blocks += 1
    try:
        yield
    finally:
        _grad_mode.enabled = previous
        with _no_grad_lock:
            _no_grad_blocks -= 1


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
        self.value = value if isinstance(value, _ndarray) else np.asarray(value)
        self.source = source
        self._grad = None  # allocated on first use; see the grad property
        self.debug = False
        self.requires_grad = requires_grad

        # These steer the backward traversal, as in vugrad.
        self.numparents = 0  # how many op inputs this node has been given to
        self.visits = 0      # how many times backward has reached this node

    @property
    def grad(self):
        """
        The gradient of the loss with respect to this node's value: an array of the value's shape and float
        dtype. At element `index` it holds the derivative of the loss with respect to `value[index]`. It is
        zero until backward() reaches this node.
        """
        if self._grad is None:
            self._grad = np.zeros(self.value.shape, dtype=grad_dtype(self.value))
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
        the graph below is gone, and backward() only sets this node's own gradient. `start` is accepted for compatibility with vugrad,
        where backward(start=False) was the internal recursive call; it has no effect.
        """
        if self.value.size != 1:
            raise ValueError(
                f'backward() can only start from a node holding a single number (a scalar loss), but this '
                f'node has shape {self.value.shape}. Reduce it first, e.g. with vg.Sum.do_forward(node).')
        if not self.requires_grad:
            raise ValueError('backward(): this node was computed without a graph (inside vg.no_grad(), or '
                             'from inputs that all have requires_grad=False), so there is nothing to backpropagate')
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
    raise TypeError(f'cannot combine a TensorNode with a {type(other).__name__}; wrap arrays in vg.TensorNode')


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
                node._grad = np.array(grad, dtype=dtype, order='C')
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


def _apply(cls, inputs, kwargs):
    """Op.do_forward: run the op's forward on the values of `inputs` and record it in the graph."""
    # (Plain loops and explicit single-input/-output cases below, not comprehensions: this runs for every op,
    #  and a comprehension creates a function object on every call in Python 3.11.)
    tracked = untracked = False
    values = []
    for given in inputs:
        if not isinstance(given, TensorNode):
            raise TypeError(f'{cls.__name__}: input {len(values)} has type {type(given).__name__}, but all inputs '
                            f'to an op must be TensorNodes (wrap arrays with vg.TensorNode(array); constants such '
                            f'as dim=... go in keyword arguments)')
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
    """

    training = True  # a class default, so subclasses that never call super().__init__() still have it

    def __init__(self):
        self.training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'{type(self).__name__} must define forward()')

    # Calling the module calls forward(), as in PyTorch: `mlp(x)` is `mlp.forward(x)`.
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

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
