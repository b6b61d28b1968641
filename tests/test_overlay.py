"""
`python -m vgrad.as_vugrad` with a student's own vugrad package: the package runs as written on vgrad's graph
machinery, its unchanged upstream definitions on vgrad's kernels, and a script prints exactly what it prints
with the package on its own — wrong gradients included.

The package is tests/overlay_package.py's, written for these tests and registered as "upstream" through the
fingerprint files course staff would use ($VGRAD_OVERLAY_UPSTREAM).
"""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import vgrad

from overlay_package import CUSTOM_OPS, register_upstream, write_package

REPO = os.path.dirname(os.path.dirname(os.path.abspath(vgrad.__file__)))


@pytest.fixture(scope='module')
def fingerprints(tmp_path_factory):
    folder = tmp_path_factory.mktemp('upstream')
    return register_upstream(str(folder), str(folder / 'fingerprints.json'))


def run(args, cwd, fingerprints=None, timeout=240, overlay=True):
    """`python -m vgrad.as_vugrad args` (or `python args` with overlay=False) in cwd."""
    env = dict(os.environ, PYTHONPATH=REPO)
    if fingerprints:
        env['VGRAD_OVERLAY_UPSTREAM'] = fingerprints
    command = [sys.executable, '-m', 'vgrad.as_vugrad', *args] if overlay else [sys.executable, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# A course-style script: an experiments/ folder whose _context.py puts the package's parent on sys.path.
CONTEXT = """\
    import os, sys
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))
    import vugrad
"""

TRAIN = """\
    from _context import vugrad
    import numpy as np
    import vugrad as vg

    np.random.seed(0)
    (xtrain, ytrain), (xval, yval), num_classes = vg.load_synth(num_train=1280, num_val=256)
    ACTIVATION = {activation}
    LINEAR_ARGS = {linear_args}

    class MLP(vg.Module):
        def __init__(self):
            self.layer1 = vg.Linear(2, 16, *LINEAR_ARGS)
            self.layer2 = vg.Linear(16, num_classes, *LINEAR_ARGS)

        def forward(self, x):
            return vg.logsoftmax(self.layer2(ACTIVATION(self.layer1(x))))

        def parameters(self):
            return self.layer1.parameters() + self.layer2.parameters()

    mlp = MLP()
    for step, fr in enumerate(range(0, 1280, 128)):
        loss = vg.logceloss(mlp(vg.TensorNode(xtrain[fr:fr + 128])), ytrain[fr:fr + 128])
        loss.backward()
        for p in mlp.parameters():
            p.value -= 0.05 * p.grad
        print(step, float(loss.value).hex(), *[float(p.grad.sum()).hex() for p in mlp.parameters()])
        loss.zero_grad()
        loss.clear()
    o = mlp(vg.TensorNode(xval))
    print('accuracy', (np.argmax(o.value, axis=1) == yval).mean())
    print('weights', *[float(np.abs(p.value).sum()).hex() for p in mlp.parameters()])
"""


def course(tmp_path, edits=(), activation='vg.sigmoid', linear_args='()', extra_files=None, script=TRAIN):
    write_package(str(tmp_path), edits, extra_files)
    write(tmp_path / 'experiments' / '_context.py', CONTEXT)
    return write(tmp_path / 'experiments' / 'train.py', script.format(activation=activation,
                                                                       linear_args=linear_args))


def both(tmp_path, fingerprints, args):
    """The script's output with the package on its own and under the overlay; both must succeed."""
    alone = run(args, tmp_path, overlay=False)
    assert alone.returncode == 0, alone.stderr
    overlaid = run(args, tmp_path, fingerprints)
    assert overlaid.returncode == 0, overlaid.stderr
    return alone, overlaid


def test_unchanged_package_prints_the_same_numbers_on_c_kernels(tmp_path, fingerprints):
    script = course(tmp_path)
    alone, overlaid = both(tmp_path, fingerprints, [str(script)])
    assert overlaid.stdout == alone.stdout
    summary = overlaid.stderr.strip().splitlines()[0]
    assert summary.startswith('vgrad: your vugrad (') and 'is upstream vugrad' in summary
    assert 'upstream definitions on C kernels' in summary


def test_explain_says_what_runs(tmp_path, fingerprints):
    script = course(tmp_path, edits=['clipped_sigmoid'])
    result = run(['--explain', str(script)], tmp_path, fingerprints)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line for line in result.stderr.splitlines()[2:] if line.strip()}
    assert 'C kernels' in rows['Exp'] and 'vgrad.ops.Exp' in rows['Exp']
    assert 'yours' in rows['Sigmoid'] and 'differs from upstream' in rows['Sigmoid']
    assert 'upstream, as written' in rows['sigmoid'] and 'Sigmoid' in rows['sigmoid']
    assert "vgrad's graph" in rows['TensorNode']
    assert 'vugrad/ops.py:' in rows['Sigmoid']


def test_a_wrong_backward_of_the_students_runs_and_gives_its_wrong_numbers(tmp_path, fingerprints):
    script = course(tmp_path, edits=['wrong_relu'], activation='vg.ReLU.do_forward')
    alone, overlaid = both(tmp_path, fingerprints, [str(script)])
    assert overlaid.stdout == alone.stdout
    assert 'vugrad/ops.py: ReLU runs as written' in overlaid.stderr
    # vgrad's own (correct) ReLU would have given other numbers: the student's is the one that ran
    right = course(tmp_path / 'right', activation='vg.relu')
    with_vgrads = run([str(right)], tmp_path / 'right', fingerprints)
    assert with_vgrads.returncode == 0, with_vgrads.stderr
    assert with_vgrads.stdout != overlaid.stdout


def test_check_names_the_wrong_backward_with_its_file_and_line(tmp_path, fingerprints):
    script = course(tmp_path, edits=['wrong_relu'], activation='vg.ReLU.do_forward')
    alone = run([str(script)], tmp_path, overlay=False)
    checked = run(['--check', str(script)], tmp_path, fingerprints)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == alone.stdout  # the check changes nothing the script prints
    where = re.search(r'ReLU\.backward \((\S+):(\d+)\)', checked.stderr)
    assert where and where.group(1).endswith('vugrad/ops.py'), checked.stderr
    line = int(where.group(2))
    source = (tmp_path / 'vugrad' / 'ops.py').read_text().splitlines()
    assert source[line - 1].strip() == 'def backward(context, go):'
    assert source[line].strip().startswith('return go  # wrong')
    table = checked.stderr.split('ReLU.backward')[1]
    assert 'yours' in table and 'numeric' in table
    assert 'differs for ReLU' in checked.stderr


def test_check_passes_a_right_backward(tmp_path, fingerprints):
    script = course(tmp_path, extra_files={'custom_ops.py': CUSTOM_OPS},
                    activation='__import__("vugrad.custom_ops").custom_ops.Tanh.do_forward')
    checked = run(['--check', str(script)], tmp_path, fingerprints)
    assert checked.returncode == 0, checked.stderr
    assert 'backward matches central differences for Tanh' in checked.stderr
    assert 'disagrees' not in checked.stderr


def test_new_keyword_in_linear(tmp_path, fingerprints):
    script = course(tmp_path, edits=['linear_init'], linear_args="('he',)")
    alone, overlaid = both(tmp_path, fingerprints, [str(script)])
    assert overlaid.stdout == alone.stdout
    assert 'vugrad/modules.py: Linear runs as written' in overlaid.stderr
    explained = run(['--explain', str(script)], tmp_path, fingerprints)
    assert 'forward (unchanged) runs vgrad.modules.Linear.forward' in explained.stderr


def test_new_submodule_of_the_students(tmp_path, fingerprints):
    script = course(tmp_path, extra_files={'custom_ops.py': CUSTOM_OPS},
                    activation='__import__("vugrad.custom_ops").custom_ops.Tanh.do_forward')
    alone, overlaid = both(tmp_path, fingerprints, [str(script)])
    assert overlaid.stdout == alone.stdout
    assert 'vugrad/custom_ops.py: Tanh runs as written' in overlaid.stderr


def test_clipped_sigmoid_runs_as_written(tmp_path, fingerprints):
    script = course(tmp_path, edits=['clipped_sigmoid'])
    alone, overlaid = both(tmp_path, fingerprints, [str(script)])
    assert overlaid.stdout == alone.stdout
    assert 'vugrad/ops.py: Sigmoid runs as written' in overlaid.stderr


def test_method_added_to_tensornode_is_grafted(tmp_path, fingerprints):
    script = course(tmp_path, edits=['division'], script=TRAIN.replace(
        "print('accuracy'", "print('div', __import__('vugrad.core').core.Div, (vg.TensorNode(np.ones(2) * 3) / vg.TensorNode(np.ones(2) * 2)).value)\n"
                            "    print('accuracy'"))
    alone, overlaid = both(tmp_path, fingerprints, [str(script)])
    assert overlaid.stdout == alone.stdout
    assert "<class 'vugrad.core.Div'>" in overlaid.stdout  # the student's Div ran, not vgrad's
    assert 'TensorNode.__truediv__, Div' in overlaid.stderr


def test_names_the_package_lacks_fall_back_to_vgrad(tmp_path, fingerprints):
    script = course(tmp_path, activation='vg.relu')  # the package has no relu: vgrad's
    result = run([str(script)], tmp_path, fingerprints)
    assert result.returncode == 0, result.stderr
    check = write(tmp_path / 'experiments' / 'names.py', """\
        from _context import vugrad
        import vugrad as vg, vugrad.ops, vugrad.mnist, vgrad
        print(vg.ReLU is vgrad.ReLU, vugrad.ops.ReLU is vgrad.ReLU, vugrad.mnist is vgrad.data)
        print(vg.Sigmoid is vgrad.Sigmoid, vg.TensorNode is vgrad.TensorNode)
        try:
            vg.no_such_name
        except AttributeError as e:
            print('AttributeError', e)
    """)
    result = run([str(check)], tmp_path, fingerprints)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'True True True'
    assert lines[1] == 'True True'
    assert lines[2].startswith('AttributeError') and 'no_such_name' in lines[2]


def test_the_students_pycache_is_never_written(tmp_path, fingerprints):
    script = course(tmp_path)
    result = run([str(script)], tmp_path, fingerprints)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / 'vugrad' / '__pycache__').exists()


def test_no_package_means_plain_vgrad(tmp_path):
    script = write(tmp_path / 's.py', """\
        import vugrad, vgrad, vugrad.ops
        print(vugrad is vgrad, vugrad.ops is vgrad.ops)
    """)
    result = run([str(script)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['True', 'True']
    assert result.stderr == ''


def test_plain_ignores_the_package(tmp_path, fingerprints):
    course(tmp_path, edits=['wrong_relu'])
    script = write(tmp_path / 'experiments' / 'plain.py', """\
        from _context import vugrad
        import vgrad
        print(vugrad is vgrad, vugrad.ReLU is vgrad.ReLU)
    """)
    result = run(['--plain', str(script)], tmp_path, fingerprints)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['True', 'True']


SPAWN = """\
    from _context import vugrad
    import multiprocessing as mp
    import numpy as np
    import vugrad as vg

    def work(seed):
        import vugrad.ops
        x = vg.TensorNode(np.full((2, 2), float(seed)))
        return type(vg.TensorNode).__name__, vg.TensorNode.__module__, float(vg.sigmoid(x).value.sum())

    if __name__ == '__main__':
        ctx = mp.get_context('{method}')
        with ctx.Pool(2) as pool:
            print(pool.map(work, [0, 1, 2]))
"""


@pytest.mark.parametrize('method', ['spawn', 'forkserver', 'fork'])
def test_worker_processes_see_the_same_vugrad(tmp_path, fingerprints, method):
    course(tmp_path)
    script = write(tmp_path / 'experiments' / 'workers.py', SPAWN.format(method=method))
    result = run([str(script)], tmp_path, fingerprints, timeout=120)
    assert result.returncode == 0, result.stderr
    results = eval(result.stdout)
    assert [r[1] for r in results] == ['vgrad.core'] * 3  # vgrad's machinery in every worker
    assert result.stderr.count('vgrad: your vugrad') == 1  # the summary once, from the parent


def test_real_student_layout_with_tests_folder(tmp_path, fingerprints):
    """`python -m vgrad.as_vugrad -m unittest` from the repository root, as a student runs tests/tests.py."""
    write_package(str(tmp_path))
    write(tmp_path / 'tests' / '_context.py', CONTEXT)
    write(tmp_path / 'tests' / 'test_ops.py', """\
        import unittest
        from _context import vugrad
        import numpy as np
        import vugrad as vg

        class T(unittest.TestCase):
            def test_sum(self):
                x = vg.TensorNode(np.arange(6.0).reshape(2, 3))
                y = vg.Sum.do_forward(vg.sigmoid(x))
                y.backward()
                self.assertEqual(type(vg.Sum).__module__, 'builtins')
                self.assertEqual(vg.Sum.__module__, 'vgrad.ops')
                self.assertEqual(x.grad.shape, (2, 3))
    """)
    result = run(['-m', 'unittest', 'discover', '-s', 'tests', '-t', 'tests'], tmp_path, fingerprints)
    assert result.returncode == 0, result.stderr
    assert 'OK' in result.stderr
