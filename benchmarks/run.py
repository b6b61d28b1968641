"""
Runs the suite: every workload on every row, each in its own process with the same thread setting, then
writes docs/benchmarks.md, docs/benchmarks.png and the raw results (build/benchmarks.json).

    python -m benchmarks --vugrad /path/to/vugrad           # full run
    python -m benchmarks --vugrad /path/to/vugrad --quick   # a minute or two: preliminary figures
    python benchmarks/run.py --from-json build/benchmarks.json   # rewrite the report only
"""
import argparse
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from importlib import util

if __package__ in (None, ''):  # run as `python benchmarks/run.py`: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import chart, inputs, machine, report, summary  # noqa: E402
from benchmarks.measure import THREAD_VARS, thread_env  # noqa: E402
from benchmarks.workloads import ROWS, make_workloads  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOAD_KEYS = ('W1', 'W2', 'W3', 'W4', 'W5', 'V2', 'CNN')


def parse_args(argv):
    p = argparse.ArgumentParser(prog='python -m benchmarks', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--vugrad', metavar='DIR',
                   help='a work tree of dlvu/vugrad (DIR/vugrad/__init__.py) to compare with; never commit it')
    p.add_argument('--quick', action='store_const', dest='mode', const='quick', default='full',
                   help='time fractions of the epochs and scale them: preliminary figures in a minute or two')
    p.add_argument('--tiny', action='store_const', dest='mode', const='tiny',
                   help='tiny sizes, one repeat: checks the machinery (for the tests); times mean nothing')
    p.add_argument('--threads', type=int, default=machine.available_cores(),
                   help='threads for every library (default: the cores available, %(default)s)')
    p.add_argument('--repeats', type=int, help='timed repeats per job (default: per workload and mode)')
    p.add_argument('--rounds', type=int, default=1,
                   help='run the whole list of jobs this many times, interleaved, pooling the repeats '
                        '(spreads a noisy neighbour over all libraries)')
    p.add_argument('--w2-fraction', type=float, help='fraction of an epoch W2/W3 time per repeat')
    p.add_argument('--workloads', default=','.join(WORKLOAD_KEYS),
                   help='comma-separated subset of %(default)s (the GEMM peak runs whenever W2 or W3 does)')
    p.add_argument('--rows', help=f'comma-separated subset of the rows: {", ".join(ROWS)}')
    p.add_argument('--data', choices=('auto', 'fashion', 'random'), default='auto',
                   help='MNIST-shaped data: Fashion-MNIST if installed (auto), required, or random')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=os.path.join(REPO, 'docs'),
                   help='directory for benchmarks.md and benchmarks.png (default: %(default)s)')
    p.add_argument('--json', default=os.path.join(REPO, 'build', 'benchmarks.json'),
                   help='where to save the raw results (default: %(default)s)')
    p.add_argument('--from-json', metavar='FILE', help='do not measure: rewrite the report from saved results')
    p.add_argument('--timeout', type=float, default=900, help='seconds before a job is abandoned')
    args = p.parse_args(argv)

    if args.vugrad and not os.path.isfile(os.path.join(args.vugrad, 'vugrad', '__init__.py')):
        p.error(f'--vugrad {args.vugrad}: not a work tree of dlvu/vugrad (no vugrad/__init__.py in it)')
    unknown = set(args.workloads.split(',')) - set(WORKLOAD_KEYS)
    if unknown:
        p.error(f'unknown workloads {sorted(unknown)}; choose from {WORKLOAD_KEYS}')
    if args.rows and set(args.rows.split(',')) - set(ROWS):
        p.error(f'unknown rows {sorted(set(args.rows.split(",")) - set(ROWS))}; choose from {list(ROWS)}')
    if args.threads < 1 or args.rounds < 1 or (args.repeats is not None and args.repeats < 1):
        p.error('--threads, --rounds and --repeats must be at least 1')
    return args


def skip_reason(row, args):
    """Why a row cannot run here (reported as n/a without starting a process), or None."""
    if row.library == 'vugrad' and not args.vugrad:
        return 'no --vugrad DIR given'
    if row.library == 'torch' and util.find_spec('torch') is None:
        return 'PyTorch not installed (pip install torch==2.13.0)'
    return None


def run_child(job, workdir, env, timeout):
    """Runs one job in a fresh interpreter; a crash or a hang becomes an 'error' result, not an exception."""
    name = f"{job['workload']['key']}-{job['row']['key']}"
    job_path, result_path = (os.path.join(workdir, f'{name}.{ext}.json') for ext in ('job', 'result'))
    with open(job_path, 'w') as f:
        json.dump(job, f)
    if os.path.exists(result_path):
        os.remove(result_path)
    try:
        proc = subprocess.run([sys.executable, '-m', 'benchmarks.child', job_path, result_path], env=env,
                              cwd=workdir, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {'status': 'error', 'reason': f'timed out after {timeout:.0f} s'}
    if proc.returncode != 0 or not os.path.exists(result_path):
        tail = ' '.join(proc.stderr.strip().splitlines()[-3:])
        return {'status': 'error', 'reason': f'process exited with code {proc.returncode}: {tail}'}
    with open(result_path) as f:
        return json.load(f)


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


def describe(workload, result):
    if result['status'] != 'ok':
        return f"{result['status']}: {result.get('reason', '')[:150]}"
    if workload.kind == 'peak':
        g = result['gflops']
        return f"{g['peak_float64']:.1f} GFLOP/s float64, {g['peak_float32']:.1f} float32"
    times = sorted(summary.per_unit(workload, t) for t in result['times'])
    unit = report.UNIT_NAMES[workload.unit]
    return f'median {times[len(times) // 2]:.4g} {unit} (best {times[0]:.4g}), ' \
           f"{result['rss_peak_kb'] / 1024:.0f} MB peak, {result['wall_s']:.1f} s"


def measure(args, command):
    selected = args.workloads.split(',')
    if {'W2', 'W3', 'W5'} & set(selected):
        selected.append('GEMM')
    workloads = [w for w in make_workloads(args.mode, args.repeats, args.w2_fraction) if w.key in selected]
    wanted_rows = set(args.rows.split(',')) | {'numpy'} if args.rows else set(ROWS)

    env = dict(os.environ, **thread_env(args.threads))
    env['PYTHONPATH'] = os.pathsep.join([REPO] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))

    started = time.time()
    meta = {'command': command, 'mode': args.mode, 'rounds': args.rounds, 'threads': args.threads,
            'thread_env': list(THREAD_VARS), 'started': datetime.datetime.now().strftime('%Y-%m-%d %H:%M'),
            'machine': machine.machine_info(), 'versions': machine.versions(),
            'vgrad_git': machine.git_state(REPO), 'loadavg_start': machine.machine_info()['loadavg'],
            'vugrad': None}
    if args.vugrad:
        vugrad_git = machine.git_state(args.vugrad)
        meta['vugrad'] = f"work tree {os.path.abspath(args.vugrad)}" + (f', git {vugrad_git}' if vugrad_git else '')
        if os.path.realpath(args.vugrad).startswith(os.path.realpath(REPO) + os.sep):
            progress(f'warning: --vugrad {args.vugrad} lies inside this repository; it must never be committed')

    jobs = {w.key: {} for w in workloads}
    with tempfile.TemporaryDirectory(prefix='vgrad-bench-') as workdir:
        progress(f'preparing inputs in {workdir} ...')
        meta['inputs'] = inputs.prepare(workdir, workloads, seed=args.seed, source=args.data)
        plan = [(w, ROWS[r]) for w in workloads for r in w.rows if r in wanted_rows]
        total = len(plan) * args.rounds
        done = 0
        for round_ in range(args.rounds):
            for w, row in plan:
                done += 1
                reason = skip_reason(row, args)
                if reason:
                    result = {'status': 'n/a', 'reason': reason}
                else:
                    job = {'workload': w.to_json(), 'row': dataclasses.asdict(row), 'threads': args.threads,
                           'inputs_dir': workdir, 'vugrad_dir': args.vugrad}
                    progress(f'[{done:2}/{total}] {w.key} {row.label} ...')
                    result = run_child(job, workdir, env, args.timeout)
                    progress(f'        {describe(w, result)}')
                jobs[w.key].setdefault(row.key, []).append(result)

    cnn = run_cnn(args, env) if 'CNN' in selected else None
    meta['duration_s'] = time.time() - started
    meta['loadavg_end'] = machine.machine_info()['loadavg']
    return {'meta': meta, 'workloads': [w.to_json() for w in workloads], 'jobs': jobs, 'cnn': cnn}


def run_cnn(args, env):
    """The CNN rows (benchmarks/cnn.py: the blitz CNN and its variants against PyTorch) in a process of their
    own with the suite's thread setting; their rows, or {'error': ...}."""
    command = [sys.executable, '-m', 'benchmarks.cnn', '--threads', str(args.threads)]
    if args.mode == 'tiny':
        command += ['--batches', '4', '--rows', 'plain', '--repeats', '1']
    else:
        command += ['--repeats', str(args.repeats or (3 if args.mode == 'quick' else 9))]
    with tempfile.TemporaryDirectory(prefix='vgrad-bench-cnn-') as workdir:
        path = os.path.join(workdir, 'cnn.json')
        progress('CNN rows: ' + ' '.join(command[1:]) + ' ...')
        try:
            done = subprocess.run(command + ['--json', path], env=env, cwd=REPO, capture_output=True, text=True,
                                  timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return {'error': f'no result within {args.timeout:g} s'}
        if done.returncode != 0 or not os.path.exists(path):
            return {'error': (done.stderr or done.stdout).strip().splitlines()[-1:] or ['no output']}
        progress(done.stdout.rstrip())
        with open(path) as f:
            return json.load(f)


def write_outputs(results, out_dir):
    s = summary.summarize(results)
    os.makedirs(out_dir, exist_ok=True)
    md_path, png_path = os.path.join(out_dir, 'benchmarks.md'), os.path.join(out_dir, 'benchmarks.png')
    drawn = chart.draw(s, png_path)
    if not drawn:
        progress('matplotlib is not installed: no chart (pip install matplotlib)')
    with open(md_path, 'w') as f:
        f.write(report.render(results, s, chart_name='benchmarks.png' if drawn else None))
    return s, md_path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
    else:
        results = measure(args, 'python -m benchmarks ' + ' '.join(argv))
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, 'w') as f:
                json.dump(results, f, indent=1)
    s, md_path = write_outputs(results, args.out)
    print(report.main_table(s))
    print(f'\nreport: {md_path}')
    errors = [f'{w} {r}' for w, rows in s['jobs'].items() for r, job in rows.items() if job['status'] == 'error']
    if errors:
        progress(f'jobs that failed: {", ".join(errors)} (see the report)')
    return 1 if errors else 0


def cli():
    """The command line entry point: main(), and `kill` unwinds like Ctrl-C, so that the running child is
    killed and the temporary inputs are removed (subprocess.run and TemporaryDirectory clean up)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())


if __name__ == '__main__':
    cli()
