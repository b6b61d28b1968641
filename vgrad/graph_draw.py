"""
Pictures of the computation graph below a node: Graphviz DOT text (`vg.to_dot(loss)`), a plain-text tree
(`to_text(loss)`), and in Jupyter an SVG drawing.

A TensorNode is drawn as an ellipse with its name (if it has one), shape and dtype, its value if it holds a
single number, and the norm of its gradient once backward() has reached it; an OpNode as a grey box with the
op's name. Arrows follow the computation, from the inputs of each op up to its outputs, so the loss is at the
top and the data and parameters at the bottom.

The SVG comes from Graphviz's `dot` program (Debian: `apt install graphviz`; elsewhere graphviz.org). Without
it, Jupyter shows the text tree. Graphs are cut off after `max_nodes` nodes, so that displaying the loss of
a long chain does not hang the notebook.

In Jupyter, `draw(node)` displays the graph; a TensorNode itself displays the same way through
TensorNode._repr_mimebundle_, which calls `mimebundle` below: core.py does not import this module (it builds on
core.py), so this module hands `mimebundle` to core.py when it is imported (at its end).
"""
import shutil
import subprocess
from collections import deque

import numpy as np

from . import core
from .core import TensorNode

__all__ = ['to_dot', 'to_text', 'to_svg', 'draw', 'mimebundle', 'GraphPicture']

MAX_NODES = 150  # TensorNodes and OpNodes together; a course MLP with its loss has about 25
DOT_TIMEOUT = 20  # seconds; dot is quick on graphs of MAX_NODES nodes


def _grad_of(node):
    """The node's gradient if backward (or anything else) has set one, without allocating zeros."""
    return getattr(node, '_grad', None)


def _tensor_facts(node):
    """The lines that describe a TensorNode: name, shape and dtype, value if a scalar, gradient norm."""
    lines = []
    if node.name is not None:
        lines.append(str(node.name))
    value = node.value
    lines.append(f'{tuple(value.shape)} {value.dtype}')
    if value.size == 1 and value.dtype.kind in 'biuf':
        lines.append(f'value {value.reshape(-1)[0]:.4g}')
    grad = _grad_of(node)
    if grad is not None:
        lines.append(f'|grad| {float(np.linalg.norm(np.asarray(grad, dtype=np.float64))):.4g}')
    return lines


def _walk(top, max_nodes):
    """
    The graph below `top`, found without recursion: (tensors, ops, edges, cut). Tensors and ops are lists
    in order of discovery; edges are (from, to) pairs of those objects; cut says whether max_nodes stopped
    the walk before the whole graph was seen.
    """
    tensors, ops, edges = [top], [], []
    seen = {id(top)}
    queue = deque([top])
    cut = False
    while queue:
        node = queue.popleft()
        op = node.source
        if op is None:
            continue
        if id(op) not in seen:
            if len(tensors) + len(ops) >= max_nodes:
                cut = True
                break
            seen.add(id(op))
            ops.append(op)
            for output in op.outputs or ():
                if id(output) not in seen:  # a sibling output of a multi-output op
                    seen.add(id(output))
                    tensors.append(output)
                edges.append((op, output))
            for parent in op.inputs or ():
                if id(parent) not in seen:
                    if len(tensors) + len(ops) >= max_nodes:
                        cut = True
                        continue
                    seen.add(id(parent))
                    tensors.append(parent)
                    queue.append(parent)
                edges.append((parent, op))
    # An edge may name a parent that was cut off; drop those.
    edges = [(a, b) for a, b in edges if id(a) in seen and id(b) in seen]
    return tensors, ops, edges, cut


def _index(items, item):
    """The positions of `item` in `items` by identity, as '0' or '0,1' (an op may take one node twice)."""
    return ','.join(str(k) for k, x in enumerate(items) if x is item)


def _quote(text):
    return '"' + str(text).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n') + '"'


def to_dot(node, max_nodes=MAX_NODES):
    """
    The computation graph below `node` as Graphviz DOT text. Render it with `dot -Tsvg`, an online
    Graphviz viewer, or `draw(node)` in Jupyter.

    :param node: a TensorNode, usually the loss.
    :param max_nodes: stop after this many nodes (TensorNodes and OpNodes); a note says how the graph was cut.
    """
    if not isinstance(node, TensorNode):
        raise TypeError(f'to_dot: expected a TensorNode, got {type(node).__name__}')
    tensors, ops, edges, cut = _walk(node, max_nodes)
    ids = {}
    lines = ['digraph vgrad {', '  rankdir=BT;', '  node [fontname="Helvetica", fontsize=11];']
    for k, tensor in enumerate(tensors):
        ids[id(tensor)] = f't{k}'
        style = 'bold' if tensor is node else ('filled' if tensor.source is None else 'solid')
        lines.append(f'  t{k} [shape=ellipse, style={style}, fillcolor="#ddeeff", '
                     f'label={_quote(chr(10).join(_tensor_facts(tensor)))}];')
    for k, op in enumerate(ops):
        ids[id(op)] = f'op{k}'
        lines.append(f'  op{k} [shape=box, style=filled, fillcolor="#e0e0e0", label={_quote(op.op.__name__)}];')
    for a, b in edges:
        # Number the inputs of ops that have several, since their order matters (Sub, Div, BatchMM).
        position = ''
        if isinstance(a, TensorNode) and b.inputs is not None and len(b.inputs) > 1:
            position = f' [label={_quote(" " + str(_index(b.inputs, a)))}, fontsize=9]'
        lines.append(f'  {ids[id(a)]} -> {ids[id(b)]}{position};')
    if cut:
        lines.append(f'  cut [shape=note, label={_quote(f"graph cut off after {max_nodes} nodes (max_nodes)")}];')
    lines.append('}')
    return '\n'.join(lines) + '\n'


def to_text(node, max_lines=MAX_NODES):
    """
    The graph below `node` as an indented tree: each TensorNode, the op that made it, that op's inputs, and
    so on. A node reached a second time (used by two ops) is shown once, then referred to by its number.
    """
    if not isinstance(node, TensorNode):
        raise TypeError(f'to_text: expected a TensorNode, got {type(node).__name__}')
    numbers = {}
    lines = []
    stack = [(node, '', '')]  # (tensor, prefix of its own line, prefix of the lines below it)
    while stack:
        if len(lines) >= max_lines:
            lines.append(f'... (cut off after {max_lines} lines)')
            break
        tensor, first, rest = stack.pop()
        if id(tensor) in numbers:
            lines.append(f'{first}#{numbers[id(tensor)]} (shown above)')
            continue
        numbers[id(tensor)] = len(numbers)
        lines.append(f'{first}#{numbers[id(tensor)]} ' + ', '.join(_tensor_facts(tensor)))
        op = tensor.source
        if op is None or op.inputs is None:
            continue
        lines.append(f'{rest}└── {op.op.__name__}')
        inputs = list(op.inputs)
        below = rest + '    '
        for k in reversed(range(len(inputs))):  # pushed in reverse, so input 0 is printed first
            last = k == len(inputs) - 1
            branch, trunk = ('└── ', '    ') if last else ('├── ', '│   ')
            stack.append((inputs[k], below + branch, below + trunk))
    return '\n'.join(lines)


def _dot_program():
    return shutil.which('dot')


def to_svg(node, max_nodes=MAX_NODES):
    """The graph below `node` drawn by Graphviz as SVG text, or None if Graphviz's `dot` is not installed."""
    return _render_svg(to_dot(node, max_nodes))


def _render_svg(dot_source):
    program = _dot_program()
    if program is None:
        return None
    try:
        done = subprocess.run([program, '-Tsvg'], input=dot_source.encode(), capture_output=True,
                              timeout=DOT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or not done.stdout:
        return None
    return done.stdout.decode('utf-8', errors='replace')


def _wanted(mime, include, exclude):
    return (include is None or mime in include) and (exclude is None or mime not in exclude)


def _bundle(dot_source, text, include, exclude):
    bundle = {'text/plain': text, 'text/vnd.graphviz': dot_source}
    if _wanted('image/svg+xml', include, exclude):
        svg = _render_svg(dot_source)
        if svg is not None:
            bundle['image/svg+xml'] = svg
    return {mime: data for mime, data in bundle.items() if _wanted(mime, include, exclude)}


def mimebundle(node, include=None, exclude=None, max_nodes=MAX_NODES):
    """
    What Jupyter shows for a TensorNode: the SVG drawing when Graphviz is installed, the text tree otherwise
    (and the DOT text, for front ends that draw it themselves). This is TensorNode._repr_mimebundle_.
    """
    return _bundle(to_dot(node, max_nodes), to_text(node, max_nodes), include, exclude)


class GraphPicture:
    """The graph below a node, ready to display in Jupyter (as SVG, or as a text tree without Graphviz)."""

    def __init__(self, node, max_nodes=MAX_NODES):
        self.dot = to_dot(node, max_nodes)
        self.text = to_text(node, max_nodes)

    def svg(self):
        """The SVG drawing, or None if Graphviz's `dot` is not installed."""
        return _render_svg(self.dot)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return _bundle(self.dot, self.text, include, exclude)

    def __repr__(self):
        return self.text


def draw(node, max_nodes=MAX_NODES):
    """Draw the graph below `node`: in Jupyter, make this the last expression of a cell."""
    return GraphPicture(node, max_nodes)


core._mimebundle = mimebundle  # TensorNode._repr_mimebundle_ (see the docstring at the top)
