"""
From the raw results of a run to the numbers the report shows: times per unit (s per epoch, ms per pass,
µs per op) with medians and bests, speed ratios against vgrad, the matmuls' share of the GEMM peak, peak
memory, the agreement of the libraries' losses, and each target met or missed.

Raw results: {'meta': {...}, 'workloads': [Workload.to_json()], 'jobs': {workload: {row: [result per
round]}}}, each result as benchmarks.child writes it.
"""
import statistics

from benchmarks.targets import TARGETS
from benchmarks.workloads import Workload, matmul_flops_per_row, ROWS

# How close the libraries' first-step losses must be (relative), per dtype: float64 must agree to
# rounding of a different summation order; float32 kernels (MKL, OpenBLAS) differ more.
AGREEMENT_TOLERANCE = {'float64': 1e-9, 'float32': 1e-5}
REFERENCE_ROW = 'vgrad'


def merge_rounds(rounds):
    """One result from the rounds of a job: all times together, the median of the peak memories."""
    ok = [r for r in rounds if r['status'] == 'ok']
    if not ok:
        return rounds[0]
    merged = dict(ok[0])
    for key in ('times', 'cpu_times', 'minor_faults'):
        merged[key] = [t for r in ok for t in r.get(key, [])]
    for key in ('rss_peak_kb', 'rss_before_kb'):
        merged[key] = statistics.median(r[key] for r in ok)
    return merged


def per_unit(workload, seconds):
    """A repeat's time in the workload's unit: s per epoch, ms per validation pass, or µs per op."""
    if workload.kind == 'train':
        return seconds * workload.epoch_rows / workload.timed_rows
    if workload.kind == 'validate':
        return 1e3 * seconds * workload.epoch_rows / workload.timed_rows
    if workload.kind == 'overhead':
        return 1e6 * seconds / (workload.iterations * workload.ops_per_iteration)
    raise ValueError(workload.kind)


def _relative(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def agreement(workload, results):
    """
    For each row that ran, how far its values are from the reference row's (relative differences): the
    first one (the first step's loss, from the same initial weights) and the largest over all steps.
    """
    ok = {key: r for key, r in results.items() if r['status'] == 'ok' and r.get('values')}
    if REFERENCE_ROW not in ok:
        return None
    ref = ok[REFERENCE_ROW]['values']
    tolerance = AGREEMENT_TOLERANCE[workload.dtype]
    rows = {}
    for key, r in ok.items():
        values = r['values']
        n = min(len(ref), len(values))
        first = _relative(ref[0], values[0])
        worst = max(_relative(a, b) for a, b in zip(ref[:n], values[:n]))
        rows[key] = {'first_value': values[0], 'first_rel': first, 'max_rel': worst, 'steps': n,
                     'ok': first <= tolerance}
    return {'reference': REFERENCE_ROW, 'tolerance': tolerance, 'rows': rows}


def summarize(results):
    workloads = {w['key']: Workload.from_json(w) for w in results['workloads']}
    jobs = {wkey: {rkey: merge_rounds(rounds) for rkey, rounds in rows.items()}
            for wkey, rows in results['jobs'].items()}
    s = {'workloads': workloads, 'jobs': jobs, 'stats': {}, 'ratios': {}, 'gemm': {}, 'rss': {},
         'agreement': {}, 'peak': None, 'faults': {}, 'floor': {}, 'targets': []}

    peak = jobs.get('GEMM', {}).get('numpy')
    if peak and peak['status'] == 'ok':
        s['peak'] = peak['gflops']

    for wkey, rows in jobs.items():
        w = workloads[wkey]
        if w.kind == 'peak':
            continue
        stats = {}
        for rkey, r in rows.items():
            if r['status'] == 'ok' and r['times']:
                values = [per_unit(w, t) for t in r['times']]
                cpu = [c / t for c, t in zip(r.get('cpu_times', []), r['times']) if t > 0]
                stats[rkey] = {'median': statistics.median(values), 'best': min(values), 'worst': max(values),
                               'n': len(values), 'cpu_per_wall': statistics.median(cpu) if cpu else None}
        s['stats'][wkey] = stats
        ref = stats.get(REFERENCE_ROW)
        s['ratios'][wkey] = {rkey: st['median'] / ref['median'] for rkey, st in stats.items()} if ref else {}
        s['agreement'][wkey] = agreement(w, rows)
        if w.kind == 'train':
            s['rss'][wkey] = {rkey: {'peak_mb': r['rss_peak_kb'] / 1024, 'before_mb': r['rss_before_kb'] / 1024}
                              for rkey, r in rows.items() if r['status'] == 'ok'}
        if w.kind == 'train' and w.data == 'mnist':
            s['gemm'][wkey] = gemm_shares(w, stats, s['peak'])
            s['floor'][wkey] = matmul_floor(w, s['peak'])
        if w.kind == 'train':
            steps = -(-w.timed_rows // w.batch)  # batches per repeat
            s['faults'][wkey] = {rkey: statistics.median(r['minor_faults']) / steps for rkey, r in rows.items()
                                 if r['status'] == 'ok' and r.get('minor_faults')}

    s['targets'] = [evaluate(t, s) for t in TARGETS]
    return s


def gemm_shares(workload, stats, peak):
    """Per row: GFLOP/s of the epoch's matrix products over the whole epoch time, and its share of peak."""
    out = {}
    for rkey, st in stats.items():
        row = ROWS[rkey]
        flops = workload.epoch_rows * matmul_flops_per_row(workload.sizes, input_grad=row.input_grad)
        gflops = flops / st['median'] / 1e9
        share = gflops / peak[f'peak_{workload.dtype}'] if peak else None
        out[rkey] = {'gflops': gflops, 'share': share}
    return out


def matmul_floor(workload, peak):
    """Seconds per epoch of the epoch's matrix products alone (the gradient over the input batch included,
    as the course computes it) at the speed NumPy reaches on these shapes: no library can take less."""
    if not peak:
        return None
    flops = workload.epoch_rows * matmul_flops_per_row(workload.sizes, input_grad=True)
    return flops / (peak[f'w2_shapes_{workload.dtype}'] * 1e9)


def evaluate(target, s):
    """{'target', 'value', 'met'}: value is None (and met None) when a row it needs did not run."""
    value = None
    if target.metric == 'speed':
        value = s['ratios'].get(target.workload, {}).get(target.versus)
    elif target.metric == 'gemm':
        value = s['gemm'].get(target.workload, {}).get(REFERENCE_ROW, {}).get('share')
    elif target.metric == 'rss':
        rss = s['rss'].get(target.workload, {})
        if REFERENCE_ROW in rss and target.versus in rss:
            value = rss[target.versus]['peak_mb'] / rss[REFERENCE_ROW]['peak_mb']
    elif target.metric == 'floor':
        floor, stats = s['floor'].get(target.workload), s['stats'].get(target.workload, {})
        if floor and target.versus in stats:
            value = floor / stats[target.versus]['median']
    elif target.metric == 'states':
        stats = s['stats'].get(target.workload, {})
        theirs = [stats[r]['median'] for r in (target.versus, target.versus + '_churned') if r in stats]
        ours = [stats[r]['median'] for r in (REFERENCE_ROW, REFERENCE_ROW + '_churned') if r in stats]
        if len(theirs) == 2 and len(ours) == 2:
            value = min(theirs) / max(ours)
    return {'target': target, 'value': value, 'met': None if value is None else value >= target.at_least}
