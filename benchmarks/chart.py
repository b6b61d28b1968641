"""
The PNG chart of a run: left, every speed (and memory) target's measured ratio against its threshold on a
log scale; right, the share of the GEMM peak each library's W2/W3 matmuls reach. Needs matplotlib.
"""


SHORT = {'torch_noinput': 'PyTorch, no input grad', 'vgrad_noinput': 'vgrad, no input grad'}


def draw(s, path):
    """Writes the chart to `path`; returns False (and draws nothing) if matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from benchmarks.workloads import ROWS

    ratios = [e for e in s['targets'] if e['target'].metric in ('speed', 'rss')]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={'width_ratios': [3, 2]})

    labels = [f"{e['target'].workload} {'RSS ' if e['target'].metric == 'rss' else ''}vs "
              f"{ROWS[e['target'].versus].label}" for e in ratios]
    values = [e['value'] or 0.0 for e in ratios]
    colors = ['#999999' if e['met'] is None else '#2a9d52' if e['met'] else '#d1495b' for e in ratios]
    ys = range(len(ratios))
    left.barh(ys, values, color=colors)
    for y, e in zip(ys, ratios):
        left.plot([e['target'].at_least] * 2, [y - 0.4, y + 0.4], color='black', linewidth=2)
        left.text(max(e['value'] or 0.0, e['target'].at_least) * 1.05, y,
                  f"{e['value']:.2f}×" if e['value'] else 'n/a', va='center', fontsize=9)
    left.set_xscale('log')
    known = [v for v in values if v > 0] + [e['target'].at_least for e in ratios]
    left.set_xlim(min(known + [1.0]) / 1.5, max(known + [1.0]) * 2.5)
    left.set_yticks(list(ys), labels)
    left.invert_yaxis()
    left.axvline(1.0, color='grey', linestyle=':', linewidth=1)
    left.set_xlabel('time(other) ÷ time(vgrad)   (> 1: vgrad faster; black tick: target)')
    left.set_title('Ratios against the targets')

    rows = [(wkey, rkey, v['share']) for wkey, g in s['gemm'].items() for rkey, v in g.items()
            if v['share'] is not None]
    labels = [f'{wkey} {SHORT.get(rkey, ROWS[rkey].label)}' for wkey, rkey, _ in rows]
    right.barh(range(len(rows)), [share * 100 for _, _, share in rows],
               color=['#1f77b4' if ROWS[r].library == 'vgrad' else '#bbbbbb' for _, r, _ in rows])
    right.axvline(70, color='black', linewidth=2)
    right.set_yticks(list(range(len(rows))), labels, fontsize=8)
    right.invert_yaxis()
    right.set_xlim(0, max([100] + [share * 110 for _, _, share in rows]))
    right.set_xlabel('% of GEMM peak (NumPy, measured here); line: target')
    right.set_title('W2/W3 matmul FLOPs ÷ epoch time')

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
