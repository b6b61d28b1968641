"""
Writes docs/benchmarks.md from a run's summary: the table of medians, ratios and targets first, then the
evidence that the work is equal (the losses), GEMM throughput, memory, the opt-outs, every repeat, and the
machine, versions and threads it was measured with.
"""
from benchmarks.summary import REFERENCE_ROW
from benchmarks.targets import CNN_TARGETS, TARGETS
from benchmarks.workloads import ROWS

MAIN_ROWS = ('vgrad', 'vugrad', 'torch', 'torch_noinput')
UNIT_NAMES = {'s': 's/epoch', 'ms': 'ms/pass', 'us': 'µs/op'}
NOISY = 1.5  # worst/best of a row's repeats above which the report flags it


def fmt_time(value, unit):
    if value is None:
        return '—'
    shown = {'s': 's', 'ms': 'ms', 'us': 'µs'}[unit]
    return f'{value:.3g} {shown}'


def fmt_ratio(value):
    return '—' if value is None else f'{value:.2f}×'


def fmt_pct(value):
    return '—' if value is None else f'{value:.0%}'


def table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


def status_cell(job):
    """What a table shows for a row that did not run: 'n/a' or 'error', with the reason."""
    if job is None:
        return 'not run'
    reason = job.get('reason', '').replace('|', '\\|').replace('\n', ' ')
    return f"{job['status']} ({reason[:120]})" if reason else job['status']


def verdicts(evaluations):
    parts = []
    for e in evaluations:
        t = e['target']
        name = {'speed': t.versus and ROWS[t.versus].label, 'gemm': 'GEMM', 'rss': 'RSS',
                'floor': t.versus and f'matmuls ({ROWS[t.versus].label})',
                'states': t.versus and f'{ROWS[t.versus].label}, better state'}[t.metric]
        if e['met'] is None:
            parts.append(f'{name}: n/a')
        else:
            shown = (fmt_pct(e['value']) if t.metric == 'gemm' else
                     f"{1 / e['value']:.2f}× the matmuls" if t.metric == 'floor' else fmt_ratio(e['value']))
            parts.append(f"{name}: {'met' if e['met'] else 'missed'} ({shown})")
    return '; '.join(parts) or '—'


def main_table(s):
    header = (['Workload'] + [ROWS[r].label for r in MAIN_ROWS]
              + [f'{ROWS[r].label} ÷ vgrad' for r in MAIN_ROWS[1:]] + ['Target', 'Met?'])
    rows = []
    for wkey in ('W1', 'W2', 'W3', 'W4', 'W5'):
        if wkey not in s['stats']:
            continue
        w, stats, ratios, jobs = s['workloads'][wkey], s['stats'][wkey], s['ratios'][wkey], s['jobs'][wkey]
        cells = [f'**{wkey}** {w.title.split(": ", 1)[-1]} ({UNIT_NAMES[w.unit]})']
        cells += [fmt_time(stats[r]['median'], w.unit) if r in stats else status_cell(jobs.get(r)) for r in MAIN_ROWS]
        cells += [fmt_ratio(ratios.get(r)) for r in MAIN_ROWS[1:]]
        evals = [e for e in s['targets'] if e['target'].workload == wkey and e['target'].metric in ('speed', 'states')]
        cells += [', '.join(e['target'].text for e in evals) or '—', verdicts(evals)]
        rows.append(cells)
    if 'W2' in s['rss']:
        rss = s['rss']['W2']
        mb = [f"{rss[r]['peak_mb']:.0f} MB" if r in rss else status_cell(s['jobs']['W2'].get(r)) for r in MAIN_ROWS]
        ratio = [fmt_ratio(rss[r]['peak_mb'] / rss[REFERENCE_ROW]['peak_mb'])
                 if r in rss and REFERENCE_ROW in rss else '—' for r in MAIN_ROWS[1:]]
        evals = [e for e in s['targets'] if e['target'].metric == 'rss']
        rows.append(['**W2 peak RSS** (of the process)'] + mb + ratio
                    + [', '.join(e['target'].text for e in evals), verdicts(evals)])
    if 'W2' in s['gemm']:
        g = s['gemm']['W2']
        evals = [e for e in s['targets'] if e['target'].metric == 'gemm']
        rows.append(['**W2 matmuls**, share of GEMM peak'] + [fmt_pct(g.get(r, {}).get('share')) for r in MAIN_ROWS]
                    + ['' for _ in MAIN_ROWS[1:]] + [', '.join(e['target'].text for e in evals), verdicts(evals)])
    return table(header, rows)


def agreement_section(s):
    rows = []
    for wkey, ag in s['agreement'].items():
        if not ag:
            continue
        w = s['workloads'][wkey]
        what = {'train': 'first-step loss', 'overhead': 'chain output', 'validate': 'validation loss'}[w.kind]
        for rkey, a in ag['rows'].items():
            rows.append([wkey, w.dtype, what, ROWS[rkey].label, f"{a['first_value']:.12g}",
                         '(reference)' if rkey == ag['reference'] else f"{a['first_rel']:.1e}",
                         f"{a['max_rel']:.1e} over {a['steps']}" if w.kind == 'train' and rkey != ag['reference']
                         else '', f"{'yes' if a['ok'] else 'NO'} (≤ {ag['tolerance']:.0e})"])
    if not rows:
        return 'No workload ran with vgrad, so there is nothing to compare.'
    return table(['Workload', 'dtype', 'value', 'row', 'value from the same initial weights',
                  'relative difference from vgrad', 'largest relative difference, per step', 'equal?'], rows)


def gemm_section(s):
    p = s['peak']
    if not p:
        return 'The GEMM peak was not measured.'
    lines = [f"Peak measured on the spot with NumPy's matmul of two {p['size']}×{p['size']} matrices "
             f"(best of the repeats; median in parentheses): "
             f"**{p['peak_float64']:.1f} GFLOP/s float64** ({p['peak_float64_median']:.1f}), "
             f"**{p['peak_float32']:.1f} GFLOP/s float32** ({p['peak_float32_median']:.1f}). "
             f"NumPy alone on W2's three big products at their own shapes (batch 128: x·w1ᵀ, gᵀ·x, g·w1) "
             f"reaches {p['w2_shapes_float64']:.1f} GFLOP/s float64 "
             f"({p['w2_shapes_float64'] / p['peak_float64']:.0%} of peak) and "
             f"{p['w2_shapes_float32']:.1f} GFLOP/s float32 ({p['w2_shapes_float32'] / p['peak_float32']:.0%}): "
             f"the most the workloads' matmuls can get here.", '',
             "Achieved: the FLOPs of an epoch's matrix products (forward, weight gradients, input gradients where "
             "computed) divided by the whole epoch's median time, so all other work counts against it: a lower "
             "bound on the matmuls' own throughput.", '']
    rows = []
    for wkey, g in s['gemm'].items():
        for rkey, v in g.items():
            rows.append([wkey, ROWS[rkey].label, f"{v['gflops']:.1f}", fmt_pct(v['share'])])
    lines.append(table(['Workload', 'row', 'GFLOP/s over the epoch', 'share of peak'], rows))
    return '\n'.join(lines)


def gaps_section(s):
    """For each missed target: the measured gap, and how much of each library's epoch is spent outside the
    matrix products, timed against the best NumPy does on the workload's own shapes (the floor no library
    goes below: W2 and W3 are matmul-bound)."""
    missed = [e for e in s['targets'] if e['met'] is False]
    if not missed:
        return 'Every measured target is met.'
    p = s['peak'] or {}
    lines = []
    for e in missed:
        t = e['target']
        value = (fmt_pct(e['value']) if t.metric == 'gemm' else
                 f"{1 / e['value']:.2f}× its matmuls" if t.metric == 'floor' else fmt_ratio(e['value']))
        lines.append(f"- **{t.workload}, {t.text}**: measured {value}.")
        floor, stats = s['floor'].get(t.workload), s['stats'].get(t.workload, {})
        if t.metric == 'floor' and floor and t.versus in stats:
            outside = {r: stats[r]['median'] - floor for r in (t.versus, 'vugrad', 'vugrad_churned') if r in stats}
            lines.append(f"  The epoch's matrix products at NumPy's speed take {floor:.2f} s, so the target leaves "
                         f"{0.3 * floor:.2f} s for everything else; {ROWS[t.versus].label} spends "
                         f"{outside[t.versus]:.2f} s outside the products"
                         + ''.join(f", {ROWS[r].label} {v:.2f} s" for r, v in outside.items() if r != t.versus)
                         + ". That time is the sigmoid and its gradient on the 128×3136 hidden layer, the bias as "
                         "Expand and Add, the loss op by op, and the course loop's own parameter update "
                         "(`p.value -= lr * p.grad`, NumPy's: a temporary and two passes over the 2.5M weights per "
                         "step, which vgrad does not run).")
        gemm = s['gemm'].get(t.workload)
        ceiling = p.get(f"w2_shapes_{'float32' if t.workload == 'W3' else 'float64'}")
        if not gemm or not ceiling:
            continue
        stats = s['stats'][t.workload]
        ref = gemm[REFERENCE_ROW]
        matmul_s = ref['gflops'] * stats[REFERENCE_ROW]['median'] / ceiling  # the epoch's FLOPs at the ceiling
        parts = [f"{ROWS[r].label} {stats[r]['median'] - matmul_s:.2f} s"
                 for r in (REFERENCE_ROW, t.versus) if r in stats and r in gemm]
        if t.metric == 'speed' and t.versus in stats:
            bound = stats[t.versus]['median'] / matmul_s
            lines.append(f"  The epoch's matrix products alone take {matmul_s:.2f} s even at NumPy's own "
                         f"{ceiling:.0f} GFLOP/s on these shapes, so no library can be more than {bound:.2f}× "
                         f"faster than {ROWS[t.versus].label} here. Time outside the products: "
                         f"{', '.join(parts)}.")
        elif t.metric == 'gemm':
            lines.append(f"  The share divides the products' FLOPs by the whole epoch; at NumPy's own "
                         f"{ceiling:.0f} GFLOP/s on these shapes ({ceiling / p['peak_float64']:.0%} of peak) the "
                         f"products take {matmul_s:.2f} s of vgrad's {stats[REFERENCE_ROW]['median']:.2f} s; the "
                         f"rest is the sigmoid, the bias and the course loop's parameter update "
                         f"(two passes over the weights per step).")
    return '\n'.join(lines)


def states_section(s):
    """The MNIST MLP (fused W2, op by op W5) in a fresh process and in one whose allocator was churned first:
    time per epoch, minor page faults per step, and how far the time is above the matrix products alone."""
    rows = []
    for wkey in ('W2', 'W5'):
        stats, faults, jobs = s['stats'].get(wkey, {}), s['faults'].get(wkey, {}), s['jobs'].get(wkey, {})
        if not stats:
            continue
        w, floor = s['workloads'][wkey], s['floor'].get(wkey)
        for rkey in w.rows:
            if rkey not in stats:
                if rkey in jobs:
                    rows.append([wkey, ROWS[rkey].label, status_cell(jobs[rkey]), '', '', ''])
                continue
            st = stats[rkey]
            rows.append([wkey, ROWS[rkey].label, fmt_time(st['median'], w.unit),
                         f"{faults[rkey]:,.0f}" if rkey in faults else '—',
                         f"{st['median'] / floor:.2f}×" if floor else '—',
                         '—' if st['cpu_per_wall'] is None else f"{st['cpu_per_wall']:.2f}"])
    if not rows:
        return 'The MNIST workloads did not run.'
    floors = ', '.join(f"{wkey} {s['floor'][wkey]:.2f} s" for wkey in ('W2', 'W5') if s['floor'].get(wkey))
    evals = [e for e in s['targets'] if e['target'].workload == 'W5']
    return ("A fresh process, and one whose allocator was churned first (200 large arrays allocated and freed "
            "before training, as a session that loaded and reshaped its data leaves it): glibc hands large "
            "freed blocks back to the kernel or keeps them depending on that history, and a training step's time "
            "can then depend on page faults more than on arithmetic. Minor faults per step are the process's "
            "(getrusage) over the timed steps. \"÷ matmuls\" is the epoch's time over its matrix products alone at "
            f"NumPy's own speed on these shapes ({floors or 'not measured'} per epoch): the floor no library goes "
            "below.\n\n"
            + table(['Workload', 'row', 'median', 'minor faults per step', '÷ matmuls', 'CPU ÷ wall'], rows)
            + ('\n\nW5 targets: ' + '; '.join(f"{e['target'].text}: {verdicts([e])}" for e in evals) if evals else ''))


def memory_section(s):
    rows = []
    for wkey, rss in s['rss'].items():
        for rkey, v in rss.items():
            rows.append([wkey, ROWS[rkey].label, f"{v['peak_mb']:.0f}", f"{v['before_mb']:.0f}",
                         f"{v['peak_mb'] - v['before_mb']:.0f}"])
    if not rows:
        return 'No training workload ran.'
    return ("Peak resident set size of each job's process (VmHWM in `/proc/self/status`; `getrusage` would "
            "report the parent's peak, as ru_maxrss survives exec): in total, before the timed work "
            '(interpreter, library, data and weights loaded), and the growth during training.\n\n'
            + table(['Workload', 'row', 'peak RSS (MB)', 'before training (MB)', 'growth (MB)'], rows))


def optouts_section(s):
    rows = []
    for wkey in ('W1', 'W2', 'W3'):
        stats, jobs = s['stats'].get(wkey, {}), s['jobs'].get(wkey, {})
        if 'vgrad_noinput' in jobs:
            w = s['workloads'][wkey]
            rows.append([wkey, ROWS['vgrad_noinput'].label,
                         fmt_time(stats['vgrad_noinput']['median'], w.unit) if 'vgrad_noinput' in stats
                         else status_cell(jobs['vgrad_noinput']),
                         fmt_ratio(s['ratios'][wkey].get('vgrad_noinput')),
                         _versus(stats, 'vgrad_noinput', 'torch_noinput')])
    if 'V2' in s['stats']:
        w, stats, jobs = s['workloads']['V2'], s['stats']['V2'], s['jobs']['V2']
        for rkey in w.rows:
            rows.append(['V2', ROWS[rkey].label,
                         fmt_time(stats[rkey]['median'], w.unit) if rkey in stats else status_cell(jobs.get(rkey)),
                         fmt_ratio(s['ratios']['V2'].get(rkey)),
                         _versus(stats, rkey, 'torch_nograd') if rkey == 'vgrad_nograd' else ''])
    if not rows:
        return 'No opt-out rows ran.'
    return ('`TensorNode(x, requires_grad=False)` on the input batch, and a validation pass (V2: the course '
            "script's accuracy over the validation set in one batch) with and without `vg.no_grad()`.\n\n"
            + table(['Workload', 'row', 'median', 'time ÷ vgrad default', 'PyTorch counterpart ÷ this'], rows))


def _versus(stats, mine, theirs):
    if mine in stats and theirs in stats:
        return f"{fmt_ratio(stats[theirs]['median'] / stats[mine]['median'])} ({ROWS[theirs].label})"
    return ''


def repeats_section(s):
    rows = []
    for wkey, stats in s['stats'].items():
        w = s['workloads'][wkey]
        ref = stats.get(REFERENCE_ROW)
        for rkey, st in stats.items():
            spread = st['worst'] / st['best']
            rows.append([wkey, ROWS[rkey].label, fmt_time(st['median'], w.unit), fmt_time(st['best'], w.unit),
                         fmt_time(st['worst'], w.unit), f"{spread:.2f}" + (' (noisy)' if spread > NOISY else ''),
                         st['n'], '—' if st['cpu_per_wall'] is None else f"{st['cpu_per_wall']:.2f}",
                         f"{fmt_ratio(st['median'] / ref['median'])} / {fmt_ratio(st['best'] / ref['best'])}"
                         if ref and rkey != REFERENCE_ROW else ''])
    for wkey, jobs in s['jobs'].items():
        for rkey, job in jobs.items():
            if job['status'] != 'ok':
                rows.append([wkey, ROWS[rkey].label, status_cell(job), '', '', '', '', '', ''])
    return (f'Spread is worst ÷ best of the repeats; above {NOISY} the row was disturbed (by other work on the '
            'machine, or by the library itself), and its median deserves less trust than usual. CPU ÷ wall is '
            "the process's CPU time (all threads) over the wall time, median over the repeats: near the "
            'number of threads the job keeps busy; well below it, the job was waiting for a core that other '
            'work held.\n\n'
            + table(['Workload', 'row', 'median', 'best', 'worst', 'spread', 'repeats', 'CPU ÷ wall',
                     'time ÷ vgrad\'s: medians / bests'], rows))


def environment_section(results, s):
    meta = results['meta']
    m, v = meta['machine'], meta['versions']
    lib_versions = {}
    for jobs in s['jobs'].values():
        for job in jobs.values():
            lib_versions.update(job.get('versions', {}))
    lines = [f"- Machine: {m['cpu']}, {m['available_cores']} cores available ({m['logical_cpus']} logical CPUs), "
             f"{m['memory_gb']} GB; {m['os']}",
             f"- Load average (1, 5, 15 min) at start: {_load(meta.get('loadavg_start'))}; "
             f"at end: {_load(meta.get('loadavg_end'))} (a shared machine: other work slows every library)",
             f"- Python {v['python']}, NumPy {v['numpy']}, PyTorch {v['torch'] or 'not installed'}"
             + (f" ({lib_versions['torch_build']})" if 'torch_build' in lib_versions else ''),
             f"- vgrad {lib_versions.get('vgrad', '?')}, git {meta.get('vgrad_git') or 'unknown'}",
             f"- vugrad: {meta['vugrad'] or 'not compared (no --vugrad DIR)'}",
             f"- Data: {meta['inputs'].get('mnist', '—')}; synthetic: {meta['inputs'].get('synth', '—')}; "
             f"initial weights as vugrad's Linear draws them after `np.random.seed({meta['inputs']['seed']})`",
             f"- Threads: {meta['threads']} for every library ({', '.join(meta['thread_env'])} = {meta['threads']} "
             f"in each process's environment, and `torch.set_num_threads({meta['threads']})`). Pools seen:"]
    for library, pools in _pools_by_library(s).items():
        lines.append(f'  - {library}: {pools}')
    return '\n'.join(lines)


def _load(avg):
    return ', '.join(f'{x:.2f}' for x in avg) if avg else '?'


def _pools_by_library(s):
    seen = {}
    for jobs in s['jobs'].values():
        for rkey, job in jobs.items():
            lib = ROWS[rkey].library
            threads = job.get('threads')
            if lib in seen or not threads:
                continue
            pools = threads.get('pools')
            if pools is None:
                text = 'threadpoolctl not installed, pools unknown'
            else:
                text = '; '.join(f"{p['internal_api']} {p['version']} ({p['user_api']}) {p['num_threads']} threads"
                                 for p in pools) or 'no BLAS/OpenMP pool loaded'
            if 'torch_threads' in threads:
                text += (f"; torch.get_num_threads() = {threads['torch_threads']}, "
                         f"interop {threads['torch_interop_threads']}")
            seen[lib] = text
    return seen


def method_section(results, s):
    meta = results['meta']
    w = s['workloads']
    parts = [
        f"Each row of each workload runs in a process of its own (`python -m benchmarks.child`), on the same "
        f"data and the same initial weights, made once by the parent and loaded by every child. "
        f"Mode **{meta['mode']}**: ",
    ]
    if 'W2' in w:
        w2 = w['W2']
        frac = w2.timed_rows / w2.epoch_rows
        parts.append(f"W2/W3 time {w2.timed_rows} of the epoch's {w2.epoch_rows} rows per repeat "
                     f"({frac:.0%}) and scale to an epoch; ")
    if 'W1' in w:
        parts.append(f"W1 times {w['W1'].timed_rows} of {w['W1'].epoch_rows} rows; ")
    parts.append(f"{meta['rounds']} round(s) of every job, each with the workload's repeats after untimed "
                 f"warm-up steps; weights reset before every repeat, so every repeat does identical work. "
                 f"Medians are reported; ratios are medians' ratios (time of the other ÷ time of vgrad, "
                 f">1 = vgrad faster).")
    text = ''.join(parts)
    text += ('\n\nThe training loop is the course script\'s (dlvu/vugrad `experiments/train_mlp.py`), run as-is '
             'with `import vgrad as vg` or `import vugrad as vg`: TensorNode of the batch, MLP, `logceloss`, '
             '`backward()`, `parm.value -= lr * parm.grad`, `zero_grad()`, `clear()`; the pixel batch is '
             'converted from uint8 to the workload\'s dtype per batch, by every library alike. PyTorch does '
             'the same maths idiomatically (`addmm` with the bias, `log_softmax`, `nll_loss(reduction="sum")`, '
             'SGD by hand, `grad = None`). W4 times forward, backward, `zero_grad()` and `clear()` of the chain '
             '(PyTorch: forward, backward, `grad = None`) and divides by the number of ops in the forward chain.')
    return text


def cnn_section(results):
    """The CNN rows of benchmarks/cnn.py against PyTorch, with their targets (CNN_TARGETS)."""
    cnn = results.get('cnn')
    if not cnn:
        return 'Not measured in this run (`--workloads` without CNN).'
    if 'error' in cnn:
        return f"The CNN rows failed: {cnn['error']}"
    rows = []
    for r in cnn['rows']:
        ratio = r['torch_wall'] / r['vgrad_wall'] if r['torch_wall'] else None
        target = CNN_TARGETS.get(r['batch'])
        met = '—' if ratio is None or target is None else ('yes' if ratio >= target else f'**no** ({ratio / target:.0%} of it)')
        rows.append([r['name'], str(r['batch']), f"{r['vgrad_wall'] * 1e3:.3f}", f"{r['vgrad_cpu'] * 1e3:.3f}",
                     '—' if r['torch_wall'] is None else f"{r['torch_wall'] * 1e3:.3f}",
                     '—' if r['torch_cpu'] is None else f"{r['torch_cpu'] * 1e3:.3f}",
                     fmt_ratio(ratio) if ratio is not None else '—',
                     f'≥ {target:g}× PyTorch' if target else '—', met])
    torch_note = (f"PyTorch {cnn['torch']} with {cnn['torch_threads']} threads" if cnn['torch']
                  else 'PyTorch not installed')
    return (f"One training step (forward, cross-entropy, backward, the optimizer's update; SGD with momentum "
            f"unless named) of the CNN of PyTorch's 60-minute blitz on CIFAR-shaped 3×32×32 batches and of the "
            f"variants a course report tries, with the same initial weights and batch in both frameworks "
            f"(`python -m benchmarks.cnn`). Best of {cnn['repeats']} runs of many steps, the frameworks' runs "
            f"alternating; vgrad with "
            f"{cnn['threads']} threads, {torch_note}. Ratio = PyTorch's wall time ÷ vgrad's (> 1: vgrad "
            f"faster); CPU time (both threads summed) beside it.\n\n"
            + table(['Network', 'Batch', 'vgrad ms', 'vgrad CPU ms', 'PyTorch ms', 'PyTorch CPU ms', 'Ratio',
                     'Target', 'Met?'], rows))


def render(results, s, chart_name=None):
    meta = results['meta']
    out = [
        '# vgrad benchmarks',
        '',
        f"Generated by `{meta['command']}` on {meta['started']} in {meta['duration_s']:.0f} s. "
        "Do not edit: rerun the suite (`python -m benchmarks --help`).",
        '',
    ]
    if meta['mode'] != 'full':
        out += [f"**Mode {meta['mode']}: preliminary figures** (fractions of epochs, fewer repeats).", '']
    out += ['## Results', '',
            'Median of the repeats per library; ratios are time(other) ÷ time(vgrad), so **> 1 means vgrad is '
            'faster** (for memory: vgrad uses less). "PyTorch" computes the input batch\'s gradient like vgrad and '
            'vugrad (equal work); the targets compare against it.', '',
            main_table(s), '']
    missed = [e for e in s['targets'] if e['met'] is False]
    unknown = [e for e in s['targets'] if e['met'] is None]
    out += [f"Targets: {len(TARGETS) - len(missed) - len(unknown)} met, {len(missed)} missed, "
            f"{len(unknown)} not measured.", '']
    noisy = [f'{wkey} {ROWS[rkey].label}' for wkey, stats in s['stats'].items() for rkey, st in stats.items()
             if st['worst'] / st['best'] > NOISY]
    if noisy:
        out += [f"Disturbed while measured (worst repeat > {NOISY}× the best; see *Every row*): "
                f"{', '.join(noisy)}.", '']
    if chart_name:
        out += [f'![speed ratios and GEMM shares]({chart_name})', '']
    out += ['## Missed targets: the gap and what limits it', '', gaps_section(s), '']
    out += ['## The work is equal', '',
            'Every library starts from the same weights on the same batches, so their first losses must agree '
            'to rounding. Values are compared with vgrad\'s; the per-step column follows the whole timed '
            'run (float64 must stay within 1e-9 relative per step against vugrad: since vgrad computes float64 bit for bit as NumPy does, the differences are 0).', '',
            agreement_section(s), '',
            'In float32 the per-step differences grow much faster than in float64: with the course\'s raw 0–255 '
            'pixels and summed loss, SGD amplifies any rounding difference from step to step, and vugrad computes '
            'part of a float32 backward in float64 (its gradients are always float64). Only the first step '
            '(same weights, same batch) is judged there.', '',
            '## CNN training step (float32, the blitz CNN and its variants)', '', cnn_section(results), '',
            '## GEMM throughput (W2, W3)', '', gemm_section(s), '',
            '## Process state: fresh and churned allocators (W2, W5)', '', states_section(s), '',
            '## Memory', '', memory_section(s), '',
            '## Opt-outs', '', optouts_section(s), '',
            '## Every row', '', repeats_section(s), '',
            '## Machine, versions, threads', '', environment_section(results, s), '',
            '## Method', '', method_section(results, s), '']
    return '\n'.join(out)
