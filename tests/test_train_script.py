"""Runs experiments/train_mlp.py, and a course-style vugrad script under `python -m vgrad.as_vugrad`."""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import vgrad

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "train_mlp.py"
ACCURACY = re.compile(r"^       accuracy: (\S+)$", re.M)
LOSS = re.compile(r"^   running loss: (\S+)$", re.M)


def run(args, cwd):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(vgrad.__file__))))
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_train_mlp_learns_synth():
    out = run([str(SCRIPT), "-D", "synth", "-e", "5", "--seed", "0"], cwd=REPO)
    lines = out.splitlines()
    # The class counts of load_synth's data under np.random.seed(0), as vugrad prints them.
    assert lines[:7] == [
        "## loaded data:",
        "         number of instances: 60000 in training, 10000 in validation",
        " training class distribution: [32567 27433]",
        "     val. class distribution: [5427 4573]",
        "",
        "## Starting training",
        "epoch 000",
    ]
    assert [line for line in lines if line.startswith("epoch")] == [f"epoch {i:03}" for i in range(5)]
    accuracies = [float(a) for a in ACCURACY.findall(out)]
    losses = [float(v) for v in LOSS.findall(out)]
    assert len(accuracies) == 5 and len(losses) == 5
    assert accuracies[-1] > 0.95
    assert losses[-1] < losses[0]


def test_train_mlp_seed_makes_runs_repeatable():
    first = run([str(SCRIPT), "-e", "1", "--seed", "3"], cwd=REPO)
    assert run([str(SCRIPT), "-e", "1", "--seed", "3"], cwd=REPO) == first
    assert run([str(SCRIPT), "-e", "1", "--seed", "4"], cwd=REPO) != first


# A course-style experiment: a _context.py that puts the repo's own vugrad/ folder on sys.path, and a
# script that builds its MLP by hand from vugrad's modules. It takes a --seed so the output can be
# compared with experiments/train_mlp.py.
COURSE_CONTEXT = """\
    import os
    import sys

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
    sys.path.insert(0, os.path.abspath(root))
    sys.path.insert(0, os.path.abspath(os.path.join(root, 'vugrad')))

    import vugrad
"""

COURSE_SCRIPT = """\
    from _context import vugrad

    from argparse import ArgumentParser
    import numpy as np
    import vugrad as vg

    parser = ArgumentParser()
    parser.add_argument('-e', dest='epochs', type=int, default=20)
    parser.add_argument('--seed', type=int)
    args = parser.parse_args()
    np.random.seed(args.seed)

    (xtrain, ytrain), (xval, yval), num_classes = vg.load_synth()
    print('## loaded data:')
    print(f'         number of instances: {xtrain.shape[0]} in training, {xval.shape[0]} in validation')
    print(f' training class distribution: {np.bincount(ytrain)}')
    print(f'     val. class distribution: {np.bincount(yval)}')

    class Net(vg.Module):
        def __init__(self, nin, nout):
            super().__init__()
            self.first = vg.Linear(nin, 4 * nin)
            self.second = vg.Linear(4 * nin, nout)

        def forward(self, x):
            return vg.logsoftmax(self.second(vg.sigmoid(self.first(x))))

        def parameters(self):
            return self.first.parameters() + self.second.parameters()

    net = Net(xtrain.shape[1], num_classes)
    print('\\n## Starting training')
    for epoch in range(args.epochs):
        print(f'epoch {epoch:03}')
        out = net(vg.TensorNode(xval))
        acc = (np.argmax(out.value, axis=1) == yval).sum() / yval.shape[0]
        out.clear()
        print(f'       accuracy: {acc:.4}')
        total = 0.0
        for start in range(0, xtrain.shape[0], 128):
            loss = vg.logceloss(net(vg.TensorNode(xtrain[start:start + 128])), ytrain[start:start + 128])
            total += loss.value
            loss.backward()
            for p in net.parameters():
                p.value -= 0.01 * p.grad
            loss.zero_grad()
            loss.clear()
        print(f'   running loss: {total / xtrain.shape[0]:.4}')
"""


def test_course_layout_runs_under_as_vugrad_like_train_mlp(tmp_path):
    for name in ("__init__.py", "core.py", "functions.py"):  # the course repo's own package: --plain ignores it
        (tmp_path / "vugrad").mkdir(exist_ok=True)
        (tmp_path / "vugrad" / name).write_text("raise RuntimeError('local vugrad imported')\n")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "_context.py").write_text(textwrap.dedent(COURSE_CONTEXT))
    (tmp_path / "experiments" / "train_mlp.py").write_text(textwrap.dedent(COURSE_SCRIPT))

    course = run(["-m", "vgrad.as_vugrad", "--plain", "experiments/train_mlp.py", "-e", "2", "--seed", "0"],
                 cwd=tmp_path)
    ours = run([str(SCRIPT), "-e", "2", "--seed", "0"], cwd=REPO)
    assert len(ACCURACY.findall(course)) == 2
    assert course == ours
