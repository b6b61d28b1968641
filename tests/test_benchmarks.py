"""
Smoke tests of the benchmark suite (benchmarks/): its machinery on tiny sizes, never its timings. The
libraries must compute the same losses from the same initial weights, and the first one must be the
course MLP's loss computed here with NumPy.

vugrad is compared when a work tree of dlvu/vugrad is found: $VGRAD_VUGRAD_DIR, else /tmp/vugrad.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent  # benchmarks/ is importable from here (pytest's pythonpath)

from benchmarks import run, summary  # noqa: E402
from benchmarks.workloads import make_workloads  # noqa: E402
VUGRAD = os.environ.get('VGRAD_VUGRAD_DIR', '/tmp/vugrad')
HAVE_VUGRAD = os.path.isfile(os.path.join(VUGRAD, 'vugrad', '__init__.py'))
HAVE_TORCH = importlib.util.find_spec('torch') is not None


def course_loss_numpy(x, y, weights):
    """The course MLP's summed NLL: sigmoid hidden layer, logsoftmax out, w (out, in) and b (1, out)."""
    w1, b1, w2, b2 = weights
    hidden = 1 / (1 + np.exp(-(x @ w1.T + b1)))
    out = hidden @ w2.T + b2
    logp = out - out.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].sum()


def glorot_weights(sizes, seed):
    """Weights drawn as vugrad's Linear draws them after np.random.seed(seed), layer by layer."""
    rs = np.random.RandomState(seed)
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        weights += [rs.randn(fan_out, fan_in) * np.sqrt(2.0 / (fan_in + fan_out)), np.zeros((1, fan_out))]
    return weights


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """One tiny run of W1 and W2 with every library available here; returns (exit code, out dir, results)."""
    out = tmp_path_factory.mktemp('bench')
    rows = ['vgrad'] + (['vugrad'] if HAVE_VUGRAD else []) + (['torch'] if HAVE_TORCH else [])
    argv = ['--tiny', '--workloads', 'W1,W2', '--rows', ','.join(rows), '--data', 'random', '--threads', '1',
            '--out', str(out), '--json', str(out / 'results.json')]
    code = run.main(argv + (['--vugrad', VUGRAD] if HAVE_VUGRAD else []))
    return code, out, json.loads((out / 'results.json').read_text())


def test_tiny_run_writes_the_report(tiny_run):
    code, out, results = tiny_run
    assert code == 0
    report = (out / 'benchmarks.md').read_text()
    assert '## Results' in report and '## The work is equal' in report
    assert '| **W1**' in report and '| **W2**' in report and '**W2 peak RSS**' in report
    for wkey in ('W1', 'W2', 'GEMM'):
        for rkey, rounds in results['jobs'][wkey].items():
            assert [r['status'] for r in rounds] == ['ok'], (wkey, rkey, rounds[0].get('reason'))
            assert all(t > 0 for t in rounds[0]['times'])
            assert rounds[0]['rss_peak_kb'] >= rounds[0]['rss_before_kb'] > 0
    if importlib.util.find_spec('matplotlib'):
        assert (out / 'benchmarks.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_libraries_compute_the_same_losses(tiny_run):
    _, _, results = tiny_run
    jobs = results['jobs']
    ran = set(jobs['W1'])
    assert 'vgrad' in ran and ('vugrad' in ran) == HAVE_VUGRAD and ('torch' in ran) == HAVE_TORCH

    # W1's first batch from the documented generator (vugrad's load_synth after np.random.seed(0)) and the
    # initial weights: the first-step loss of every library is this NumPy value.
    np.random.seed(0)
    x = np.random.randn(512, 2)
    y = (np.einsum('bf, fk, bk -> b', x, np.asarray([[1, 0.5], [1, 0.2]]), x) > 0.6).astype(np.int64)
    expected = course_loss_numpy(x[:128], y[:128], glorot_weights((2, 8, 2), seed=0))
    for rkey in ran:
        assert jobs['W1'][rkey][0]['values'][0] == pytest.approx(expected, rel=1e-12), rkey

    # W2 (784 -> 3136 -> 10, random pixels): every step's loss equal across libraries to 1e-9 relative.
    losses = {rkey: np.array(rounds[0]['values']) for rkey, rounds in jobs['W2'].items()}
    assert len(losses['vgrad']) == 2  # 256 rows in batches of 128
    for rkey, values in losses.items():
        np.testing.assert_allclose(values, losses['vgrad'], rtol=1e-9, err_msg=rkey)


def test_failing_library_becomes_an_error_row(tmp_path):
    """A library that cannot even be imported: its row says error, the others run, the report is written."""
    broken = tmp_path / 'vugrad-tree'
    (broken / 'vugrad').mkdir(parents=True)
    (broken / 'vugrad' / '__init__.py').write_text("raise ImportError('broken on purpose')\n")
    out = tmp_path / 'out'
    code = run.main(['--tiny', '--workloads', 'W4', '--rows', 'vgrad,vugrad', '--vugrad', str(broken),
                     '--out', str(out), '--json', str(out / 'r.json')])
    assert code == 1
    jobs = json.loads((out / 'r.json').read_text())['jobs']['W4']
    assert jobs['vgrad'][0]['status'] == 'ok'
    assert jobs['vugrad'][0]['status'] == 'error' and 'broken on purpose' in jobs['vugrad'][0]['reason']
    assert 'broken on purpose' in (out / 'benchmarks.md').read_text()


def test_rejects_a_directory_without_vugrad(tmp_path):
    with pytest.raises(SystemExit):
        run.main(['--vugrad', str(tmp_path)])


def test_ratios_and_targets_from_results():
    """summary turns raw times into per-epoch medians, ratios (other / vgrad) and met/missed targets."""
    w1 = next(w for w in make_workloads('full') if w.key == 'W1')
    w1_half = w1.to_json() | {'timed_rows': w1.epoch_rows // 2}  # half an epoch timed: times double

    def job(times):
        return [{'status': 'ok', 'times': times, 'values': [1.0], 'rss_peak_kb': 2048, 'rss_before_kb': 1024}]

    results = {'workloads': [w1_half], 'jobs': {'W1': {'vgrad': job([1.0, 3.0, 2.0]), 'vugrad': job([12.0]),
                                                        'torch': job([1.0, 1.0, 1.0])}}}
    s = summary.summarize(results)
    assert s['stats']['W1']['vgrad']['median'] == pytest.approx(4.0)
    assert s['stats']['W1']['vgrad']['best'] == pytest.approx(2.0)
    assert s['ratios']['W1']['vugrad'] == pytest.approx(6.0)
    assert s['ratios']['W1']['torch'] == pytest.approx(0.5)
    verdict = {(e['target'].workload, e['target'].versus): e['met'] for e in s['targets']}
    assert verdict[('W1', 'vugrad')] is True       # 6x >= 5x
    assert verdict[('W1', 'torch')] is False       # 0.5x < 1x
    assert verdict[('W2', 'vugrad')] is None       # not measured


@pytest.mark.parametrize('command', [['benchmarks/run.py'], ['-m', 'benchmarks']])
def test_both_entry_points(command):
    proc = subprocess.run([sys.executable, *command, '--help'], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert '--vugrad' in proc.stdout


def test_cnn_rows_run_and_are_judged_against_their_targets(tmp_path):
    """benchmarks.cnn --json writes a row per network and batch with both frameworks' times; the report judges
    each against CNN_TARGETS (met, or the fraction of the target reached)."""
    from benchmarks import report
    from benchmarks.targets import CNN_TARGETS
    out = tmp_path / 'cnn.json'
    subprocess.run([sys.executable, '-m', 'benchmarks.cnn', '--batches', '4', '--rows', 'plain', '--repeats', '1',
                    '--threads', '1', '--json', str(out)], cwd=REPO, check=True, capture_output=True, timeout=600)
    cnn = json.loads(out.read_text())
    assert [(r['name'], r['batch']) for r in cnn['rows']] == [('plain, SGD momentum', 4)]
    row = cnn['rows'][0]
    assert row['vgrad_wall'] > 0 and row['vgrad_cpu'] > 0
    assert (row['torch_wall'] is not None) == HAVE_TORCH
    fast = dict(row, batch=4, vgrad_wall=1.0, torch_wall=2.0)     # 2x: above 1.5x
    slow = dict(row, batch=64, vgrad_wall=1.0, torch_wall=0.5)    # 0.5x: half of 1x
    text = report.cnn_section({'cnn': dict(cnn, torch='2.13', torch_threads=1, rows=[fast, slow])})
    lines = [line for line in text.splitlines() if line.startswith('| plain')]
    assert lines[0].endswith('| yes |') and f'≥ {CNN_TARGETS[4]:g}×' in lines[0]
    assert '**no** (50% of it)' in lines[1]
    assert 'failed' in report.cnn_section({'cnn': {'error': 'boom'}})
