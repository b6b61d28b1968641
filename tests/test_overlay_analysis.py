"""
The overlay's pieces in-process: fingerprints (what counts as the same definition), the decisions of the
package analysis, and the committed fingerprints and equivalents against upstream vugrad itself where a
work tree of it is given ($VGRAD_VUGRAD_DIR, e.g. a clone of github.com/dlvu/vugrad; skipped otherwise).
"""
import ast
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vgrad as vg
from vgrad.overlay import analysis, equivalents, upstream
from vgrad.overlay.fingerprint import fingerprint, free_names

from overlay_package import register_upstream, write_package

VUGRAD = os.environ.get('VGRAD_VUGRAD_DIR')
needs_vugrad = pytest.mark.skipif(not VUGRAD, reason='set VGRAD_VUGRAD_DIR to a git work tree of dlvu/vugrad')


def fp(source):
    return fingerprint(ast.parse(textwrap.dedent(source)).body[0])


SIGMOID = '''
    class Sigmoid(Op):
        """Op for element-wise application of sigmoid function"""

        @staticmethod
        def forward(context, input):
            sigx =  1 / (1 + np.exp(-input))
            context['sigx'] = sigx # store the sigmoid of x for the backward pass
            return sigx

        @staticmethod
        def backward(context, goutput):
            sigx = context['sigx'] # retrieve the sigmoid of x
            return goutput * sigx * (1 - sigx)
'''


def test_comments_docstrings_and_formatting_do_not_change_a_fingerprint():
    reformatted = '''
        class Sigmoid(Op):
            @staticmethod
            def forward(context, input):
                """A docstring the original does not have."""
                sigx = 1 / (
                    1 + np.exp(-input)
                )
                context["sigx"] = sigx
                return sigx

            @staticmethod
            def backward(context, goutput):
                sigx = context["sigx"]
                return goutput * sigx * (1 - sigx)  # another comment
    '''
    assert fp(SIGMOID) == fp(reformatted)


def test_any_change_to_the_code_changes_the_fingerprint():
    assert fp(SIGMOID) != fp(SIGMOID.replace('1 - sigx', '1.0 - sigx'))
    assert fp(SIGMOID) != fp(SIGMOID.replace("context['sigx'] = sigx #", "context['s'] = sigx #"))
    assert fp(SIGMOID) != fp(SIGMOID.replace('-input', '-np.clip(input, -8, 8)'))
    assert fp(SIGMOID) != fp(SIGMOID.replace('class Sigmoid(Op)', 'class Sigmoid2(Op)'))


def test_numpys_removed_int_alias_is_the_same_as_int():
    assert fp('y = (q > 0.6).astype(np.int)') == fp('y = (q > 0.6).astype(int)')
    assert fp('y = (q > 0.6).astype(np.float)') == fp('y = (q > 0.6).astype(float)')
    assert fp('y = (q > 0.6).astype(np.int64)') != fp('y = (q > 0.6).astype(int)')
    assert fp('y = (q > 0.6).astype(other.int)') != fp('y = (q > 0.6).astype(int)')


def test_free_names_are_the_globals_a_definition_reads():
    node = ast.parse(textwrap.dedent('''
        def logceloss(logprobs, targets):
            per_instance = Select.do_forward(logprobs, indices=targets)
            import math
            return Sum.do_forward(per_instance) * - 1.0 + len(targets) * math.pi
    ''')).body[0]
    assert free_names(node) == {'Select', 'Sum'}


# -- the committed fingerprints and equivalents ------------------------------------------------------------

def test_every_equivalent_replaces_a_name_upstream_defines():
    for name in equivalents.names():
        assert upstream.knows(name), name
    for (cls, method) in equivalents.methods():
        assert upstream.knows_method(cls, method), (cls, method)


def test_the_fingerprints_cover_the_course_copy_of_2023():
    """The newer course copy's loaders (load_mnist with shuffle_seed) are known, and vgrad's load_mnist is
    their equivalent; the older one reads the file in order."""
    revisions = upstream.revisions()
    assert 'course-copy-2023' in revisions
    rows = json.load(open(upstream.PATH))['definitions']
    loaders = [r for r in rows if r['name'] == 'load_mnist' and r['kind'] == 'definition']
    assert any('course-copy-2023' in r['revisions'] for r in loaders)
    assert len(loaders) >= 3  # the 2020 stub, the file-order loader, the 2023 shuffling one


@needs_vugrad
def test_committed_fingerprints_match_a_vugrad_work_tree(tmp_path):
    out = tmp_path / 'upstream.json'
    subprocess.run([sys.executable, '-m', 'vgrad.overlay.regenerate', VUGRAD, '--out', str(out)], check=True,
                   capture_output=True)
    fresh = json.load(open(out))
    committed = json.load(open(upstream.PATH))

    def rows(data, labels):
        found = set()
        for row in data['definitions']:
            revisions = tuple(sorted(set(row['revisions']) & labels))
            if revisions:
                found.add((row['kind'], row['module'], row['class'], row['name'], row['fingerprint'], revisions))
        return found

    labels = set(fresh['revisions'])
    assert labels <= set(committed['revisions']), 'the work tree has revisions upstream.json lacks: regenerate'
    assert rows(committed, labels) == rows(fresh, labels)


def _upstream_sources(name):
    """{fingerprint: source of one revision's definition of `name`} over every revision in the work tree."""
    def git(*args):
        return subprocess.run(['git', '-C', VUGRAD, *args], check=True, capture_output=True, text=True).stdout
    found = {}
    for commit in git('rev-list', '--all').split():
        for path in git('ls-tree', '-r', '--name-only', commit).split():
            if not (path.startswith('vugrad/') and path.endswith('.py')):
                continue
            try:
                tree = ast.parse(git('show', f'{commit}:{path}'))
            except SyntaxError:
                continue
            for stmt in tree.body:
                if getattr(stmt, 'name', None) == name:
                    found.setdefault(fingerprint(stmt), ast.unparse(stmt))
    return found


class _Op:  # enough of vugrad's Op to call a class's forward and backward directly
    pass


OP_INPUTS = {
    'Add': lambda r: ([r.standard_normal((5, 7)), r.standard_normal((5, 7))], {}),
    'Sub': lambda r: ([r.standard_normal((5, 7)), r.standard_normal((5, 7))], {}),
    'Multiply': lambda r: ([r.standard_normal((5, 7)), r.standard_normal((5, 7))], {}),
    'MatrixMultiply': lambda r: ([r.standard_normal((5, 7)), r.standard_normal((7, 3))], {}),
    'BatchMM': lambda r: ([r.standard_normal((4, 7)), r.standard_normal((9, 7))], {}),
    'Log': lambda r: ([r.uniform(0.1, 3, (5, 7))], {}),
    'Exp': lambda r: ([r.standard_normal((5, 7)) * 5], {}),
    'Sigmoid': lambda r: ([r.standard_normal((5, 7)) * 10], {}),
    'Id': lambda r: ([r.standard_normal((5, 7))], {}),
    'Sum': lambda r: ([r.standard_normal((50, 70))], {}),
    'RowSum': lambda r: ([r.standard_normal((50, 70))], {}),
    'RowMax': lambda r: ([r.standard_normal((50, 70))], {}),
    'Normalize': lambda r: ([r.uniform(0.1, 3, (50, 70))], {}),
    'Expand': lambda r: ([r.standard_normal((1, 7))], {'dim': 0, 'repeats': 5}),
    'Select': lambda r: ([r.standard_normal((6, 7))], {'indices': r.integers(0, 7, 6)}),
    'Squeeze': lambda r: ([r.standard_normal((5, 1, 7))], {'dim': 1}),
    'Unsqueeze': lambda r: ([r.standard_normal((5, 7))], {'dim': 1}),
}


@needs_vugrad
@pytest.mark.parametrize('name', sorted(OP_INPUTS))
def test_each_upstream_op_and_its_equivalent_compute_the_same_bits(name):
    """Every upstream revision's version of an op that vgrad replaces gives, forward and backward, exactly
    what vgrad's equivalent gives (float64, np.array_equal)."""
    sources = _upstream_sources(name)
    assert sources
    rng = np.random.default_rng(0)
    for fingerprint_, source in sources.items():
        if not upstream.revisions_of(name, fingerprint_):
            continue
        equivalent = equivalents.for_definition(name, upstream.revisions_of(name, fingerprint_))
        assert equivalent is getattr(vg, name)
        namespace = {'np': np, 'Op': _Op}
        exec(source, namespace)
        theirs = namespace[name]
        inputs, kwargs = OP_INPUTS[name](rng)
        ctx_theirs, ctx_ours = {}, {}
        y_theirs = theirs.forward(ctx_theirs, *inputs, **kwargs)
        y_ours = equivalent.forward(ctx_ours, *inputs, **kwargs)
        np.testing.assert_array_equal(y_ours, y_theirs)
        assert set(ctx_theirs) <= set(ctx_ours)  # code reading the context finds what vugrad's put there
        go = rng.standard_normal(np.shape(y_theirs))
        g_theirs, g_ours = theirs.backward(ctx_theirs, go), equivalent.backward(ctx_ours, go)
        g_theirs = g_theirs if isinstance(g_theirs, tuple) else (g_theirs,)
        g_ours = g_ours if isinstance(g_ours, tuple) else (g_ours,)
        for a, b in zip(g_ours, g_theirs):
            np.testing.assert_array_equal(a, b)


@needs_vugrad
def test_upstream_load_synth_and_its_equivalent_draw_the_same_data(np_random_state):
    for fingerprint_, source in _upstream_sources('load_synth').items():
        equivalent = equivalents.for_definition('load_synth', upstream.revisions_of('load_synth', fingerprint_),
                                                ast.parse(source).body[0])
        if equivalent is None:
            continue
        namespace = {'np': np}
        exec(source.replace('np.int)', 'int)'), namespace)
        np.random.seed(3)
        theirs = namespace['load_synth'](num_train=100, num_val=20)
        np.random.seed(3)
        ours = equivalent(num_train=100, num_val=20)
        for a, b in zip(np.asarray(theirs[:2], dtype=object).ravel(), np.asarray(ours[:2], dtype=object).ravel()):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
        assert theirs[2] == ours[2]


# -- decisions of the analysis ------------------------------------------------------------------------------

@pytest.fixture
def registered(tmp_path, monkeypatch):
    """The test package registered as upstream for this process."""
    out = register_upstream(str(tmp_path / 'up'), str(tmp_path / 'fingerprints.json'))
    monkeypatch.setenv(upstream.EXTRA_VARIABLE, out)
    upstream._load.cache_clear()
    yield tmp_path
    upstream._load.cache_clear()


def analyse(tmp_path, edits=(), extra=None, append=None):
    package = write_package(str(tmp_path / 'student'), edits, extra)
    for name, text in (append or {}).items():
        with open(os.path.join(package, name), 'a') as f:
            f.write(textwrap.dedent(text))
    return analysis.Package(package)


def status(package, module, name):
    return package.find(module, name).status


def test_unchanged_package_is_accelerated(registered):
    package = analyse(registered)
    assert status(package, 'ops', 'Sigmoid') == analysis.ACCELERATED
    assert status(package, 'functions', 'logsoftmax') == analysis.ACCELERATED
    assert package.find('ops', 'Sigmoid').equivalent is vg.Sigmoid
    assert package.find('modules', 'Linear').swapped == {'forward': vg.Linear.forward}
    assert 'is upstream vugrad' in package.summary()


def test_a_change_taints_what_uses_it_and_nothing_else(registered):
    package = analyse(registered, ['clipped_sigmoid'])
    assert status(package, 'ops', 'Sigmoid') == analysis.AS_WRITTEN
    assert status(package, 'functions', 'sigmoid') == analysis.UPSTREAM  # upstream code, using theirs
    assert status(package, 'functions', 'logsoftmax') == analysis.ACCELERATED
    assert status(package, 'ops', 'Exp') == analysis.ACCELERATED


def test_changing_an_op_after_its_definition_counts_as_a_change(registered):
    package = analyse(registered, append={'ops.py': '''

        def _my_backward(context, go):
            return go * 2

        Exp.backward = staticmethod(_my_backward)
    '''})
    exp = package.find('ops', 'Exp')
    assert exp.status == analysis.AS_WRITTEN and exp.problem.startswith('changed at line')
    assert status(package, 'functions', 'logsoftmax') == analysis.UPSTREAM  # uses Exp


def test_changing_add_taints_every_use_of_plus_on_nodes(registered):
    package = analyse(registered, append={'core.py': '''

        class Add(Op):
            @staticmethod
            def forward(context, a, b):
                return a + b + 0.0

            @staticmethod
            def backward(context, go):
                return go, go
    '''})
    assert package.find('core', 'Add').status == analysis.AS_WRITTEN
    assert 'defined twice' in package.find('core', 'Add').problem
    assert status(package, 'functions', 'logsoftmax') == analysis.ACCELERATED  # `x - xmax` does not use Add ...
    assert package.find('modules', 'Linear').swapped == {}                  # ... but Linear's `x + exb` does
    # inside an op's forward and backward, + acts on arrays: no op depends on TensorNode's operators
    assert status(package, 'ops', 'Sigmoid') == analysis.ACCELERATED


def test_a_method_added_to_tensornode_is_grafted_and_reported(registered):
    package = analyse(registered, ['division'])
    method = package.find('core', 'TensorNode.__truediv__')
    assert method.grafted and method.status == analysis.AS_WRITTEN
    assert status(package, 'core', 'TensorNode') == analysis.MACHINERY_STATUS
    assert 'TensorNode.__truediv__' in package.summary()


def test_a_change_to_the_traversal_is_reported_as_not_used(registered):
    package = analyse(registered, append={'core.py': '''

        def _backward(self, start=True):
            raise RuntimeError('never runs')
    '''})
    assert status(package, 'core', 'TensorNode') == analysis.MACHINERY_STATUS
    core = os.path.join(package.directory, 'core.py')
    text = open(core).read().replace('self.visits += 1\n', 'self.visits += 2\n', 1)
    open(core, 'w').write(text)
    package = analysis.Package(package.directory)
    assert 'your changes to backward are not used' in package.find('core', 'TensorNode').detail
