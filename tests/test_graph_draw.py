"""Tests for the graph pictures: DOT text, the text tree, and what Jupyter displays (SVG when Graphviz is there)."""
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import vgrad as vg
from vgrad import graph_draw

HAVE_DOT = shutil.which('dot') is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's dot program is not installed")


def parse_dot(text):
    """{node id: {attribute: value}} and [(from, to, attributes)] from to_dot's output."""
    nodes, edges = {}, []
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r'^(\w+) -> (\w+)(?: \[(.*)\])?;$', line)
        if m:
            edges.append((m.group(1), m.group(2), _attrs(m.group(3) or '')))
            continue
        m = re.match(r'^(\w+) \[(.*)\];$', line)
        if m and m.group(1) not in ('node', 'edge', 'graph'):
            nodes[m.group(1)] = _attrs(m.group(2))
    return nodes, edges


def _attrs(text):
    return {k: (v[1:-1].replace('\\n', '\n').replace('\\"', '"').replace('\\\\', '\\') if v.startswith('"') else v)
            for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\s]+)', text)}


def small_graph():
    """c = (a - b) * a with named leaves, and its loss."""
    a = vg.TensorNode(np.array([[1.0, 2.0, 3.0]]), name='a')
    b = vg.TensorNode(np.array([[0.5, -1.0, 4.0]]), name='b')
    c = (a - b) * a
    c.name = 'c'
    return a, b, c


def by_label(nodes, first_line):
    found = [k for k, attrs in nodes.items() if attrs['label'].split('\n')[0] == first_line]
    assert len(found) == 1, (first_line, nodes)
    return found[0]


# ---------------------------------------------------------------- DOT

def test_dot_has_every_node_and_edge():
    a, b, c = small_graph()
    nodes, edges = parse_dot(vg.to_dot(c))
    tensors = {k for k, v in nodes.items() if v['shape'] == 'ellipse'}
    ops = {k: v['label'] for k, v in nodes.items() if v['shape'] == 'box'}
    assert len(tensors) == 4 and sorted(ops.values()) == ['Multiply', 'Sub']
    ta, tb, tc = by_label(nodes, 'a'), by_label(nodes, 'b'), by_label(nodes, 'c')
    sub = next(k for k, v in ops.items() if v == 'Sub')
    mul = next(k for k, v in ops.items() if v == 'Multiply')
    (diff,) = tensors - {ta, tb, tc}

    plain = {(x, y) for x, y, _ in edges}
    assert plain == {(ta, sub), (tb, sub), (sub, diff), (diff, mul), (ta, mul), (mul, tc)}
    # Inputs of two-input ops carry their position: a - b, then (a - b) * a.
    labels = {(x, y): attrs.get('label', '').strip() for x, y, attrs in edges}
    assert labels[(ta, sub)] == '0' and labels[(tb, sub)] == '1'
    assert labels[(diff, mul)] == '0' and labels[(ta, mul)] == '1'
    assert nodes[ta]['label'] == 'a\n(1, 3) float64'
    assert nodes[tc]['style'] == 'bold'  # the node drawn from


def test_dot_shows_gradient_norms_after_backward_and_scalar_values():
    a, b, c = small_graph()
    loss = vg.Sum.do_forward(c)
    nodes, _ = parse_dot(vg.to_dot(loss))
    assert not any('|grad|' in v.get('label', '') for v in nodes.values())

    loss.backward()
    nodes, _ = parse_dot(vg.to_dot(loss))
    # loss = sum((a - b) * a): d/da = 2a - b, d/db = -a (worked out by hand)
    expected = {'a': np.linalg.norm(2 * a.value - b.value), 'b': np.linalg.norm(-a.value)}
    for name, norm in expected.items():
        label = nodes[by_label(nodes, name)]['label']
        assert label.split('\n')[-1] == f'|grad| {norm:.4g}'
    top = [v['label'] for v in nodes.values() if v.get('style') == 'bold'][0]
    value = np.sum((a.value - b.value) * a.value)
    assert top.split('\n') == ['() float64', f'value {value:.4g}', '|grad| 1']


def test_dot_shows_both_outputs_of_a_multi_output_op():
    class Split(vg.Op):
        @staticmethod
        def forward(context, x):
            return x[:1], x[1:]

        @staticmethod
        def backward(context, g1, g2):
            return np.concatenate([g1, g2])

    first, second = Split.do_forward(vg.TensorNode(np.arange(3.0)))
    nodes, edges = parse_dot(vg.to_dot(first))
    labels = sorted(v['label'] for v in nodes.values() if v['shape'] == 'ellipse')
    assert labels == ['(1,) float64\nvalue 0', '(2,) float64', '(3,) float64']
    op = next(k for k, v in nodes.items() if v['shape'] == 'box')
    assert sum(1 for x, _, _ in edges if x == op) == 2


def test_dot_escapes_names():
    x = vg.TensorNode(np.ones(2), name='say "hi" \\ there')
    nodes, _ = parse_dot(vg.to_dot(vg.Exp.do_forward(x)))
    assert any(v['label'].startswith('say "hi" \\ there\n') for v in nodes.values())


def test_long_chain_is_cut_off_without_recursion():
    x = vg.TensorNode(np.ones(2))
    y = x
    for _ in range(5000):  # deeper than Python's recursion limit
        y = vg.Id.do_forward(y)
    nodes, edges = parse_dot(vg.to_dot(y, max_nodes=40))
    drawn = [k for k, v in nodes.items() if v['shape'] in ('ellipse', 'box')]
    assert 38 <= len(drawn) <= 41
    assert 'cut' in nodes and '40' in nodes['cut']['label']
    assert all(a in nodes and b in nodes for a, b, _ in edges)
    assert 'cut' not in parse_dot(vg.to_dot(vg.Exp.do_forward(x)))[0]


def test_cleared_graph_is_a_single_node():
    _, _, c = small_graph()
    c.clear()
    nodes, edges = parse_dot(vg.to_dot(c))
    assert list(nodes) == ['t0'] and edges == []


def test_rejects_non_nodes():
    with pytest.raises(TypeError, match='TensorNode'):
        vg.to_dot(np.ones(2))


# ---------------------------------------------------------------- text tree

def test_text_tree():
    a, b, c = small_graph()
    assert graph_draw.to_text(c).splitlines() == [
        '#0 c, (1, 3) float64',
        '└── Multiply',
        '    ├── #1 (1, 3) float64',
        '    │   └── Sub',
        '    │       ├── #2 a, (1, 3) float64',
        '    │       └── #3 b, (1, 3) float64',
        '    └── #2 (shown above)',
    ]


def test_text_tree_is_cut_off():
    y = vg.TensorNode(np.ones(1))
    for _ in range(3000):
        y = vg.Exp.do_forward(y)
    lines = graph_draw.to_text(y, max_lines=20).splitlines()
    assert len(lines) == 21 and lines[-1] == '... (cut off after 20 lines)'


# ---------------------------------------------------------------- what Jupyter shows

def test_without_graphviz_jupyter_gets_text_and_dot(monkeypatch):
    monkeypatch.setattr(graph_draw, '_dot_program', lambda: None)
    _, _, c = small_graph()
    bundle = graph_draw.mimebundle(c)
    assert set(bundle) == {'text/plain', 'text/vnd.graphviz'}
    assert bundle['text/plain'] == graph_draw.to_text(c)
    assert bundle['text/vnd.graphviz'] == vg.to_dot(c)
    assert graph_draw.to_svg(c) is None
    picture = graph_draw.draw(c)
    assert picture.svg() is None and repr(picture) == graph_draw.to_text(c)


def test_failing_graphviz_falls_back_to_text(monkeypatch):
    false = shutil.which('false')
    if false is None:
        pytest.skip('no `false` program to stand in for a broken dot')
    monkeypatch.setattr(graph_draw, '_dot_program', lambda: false)
    _, _, c = small_graph()
    assert 'image/svg+xml' not in graph_draw.mimebundle(c)


def test_include_and_exclude(monkeypatch):
    calls = []
    monkeypatch.setattr(graph_draw, '_dot_program', lambda: calls.append(1))
    _, _, c = small_graph()
    assert set(graph_draw.mimebundle(c, include={'text/plain'})) == {'text/plain'}
    assert set(graph_draw.mimebundle(c, exclude={'image/svg+xml', 'text/vnd.graphviz'})) == {'text/plain'}
    assert calls == []  # dot is not run for an SVG nobody wants


@needs_dot
def test_svg_drawing():
    a, b, c = small_graph()
    vg.Sum.do_forward(c).backward()
    svg = graph_draw.to_svg(c)
    root = ET.fromstring(svg.encode())
    assert root.tag.endswith('svg')
    texts = [t.text for t in root.iter() if t.tag.endswith('text')]
    assert {'Multiply', 'Sub', 'a', 'b', 'c'} <= set(texts)
    assert any(t.startswith('|grad|') for t in texts)
    assert graph_draw.mimebundle(c)['image/svg+xml'] == svg
    assert graph_draw.draw(c)._repr_mimebundle_()['image/svg+xml'] == svg


def test_tensornode_displays_through_ipython(monkeypatch):
    """What the hook in TensorNode (a _repr_mimebundle_ calling graph_draw.mimebundle) gives in Jupyter."""
    formatters = pytest.importorskip('IPython.core.formatters')
    if not hasattr(vg.TensorNode, '_repr_mimebundle_'):
        monkeypatch.setattr(vg.TensorNode, '_repr_mimebundle_',
                            lambda self, include=None, exclude=None: graph_draw.mimebundle(self, include, exclude),
                            raising=False)
    _, _, c = small_graph()
    data, _ = formatters.DisplayFormatter().format(c)
    assert data['text/plain'] == graph_draw.to_text(c)
    assert ('image/svg+xml' in data) == HAVE_DOT
