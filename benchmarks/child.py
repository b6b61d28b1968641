"""
One job (a workload on one row) in a process of its own, so that libraries never share an interpreter,
a thread pool or a peak-memory count:

    python -m benchmarks.child JOB.json RESULT.json

The parent (benchmarks.run) writes JOB.json and sets the thread variables in the environment; this writes
RESULT.json: status ('ok', 'n/a' when the library lacks a feature, 'error'), times, the values the
libraries must agree on, peak RSS before and after the work, versions and thread pools.
"""
import json
import os
import re
import sys
import time
import traceback

from benchmarks.measure import NotAvailable, churn_allocator, peak_rss_kb, thread_info
from benchmarks.workloads import Row, Workload


def torch_build(torch):
    """PyTorch's BLAS and CPU kernel level, from its build description."""
    shown = torch.__config__.show()
    blas = re.search(r'BLAS_INFO=([^,\s]+)', shown)
    parts = [f'BLAS {blas.group(1)}' if blas else None]
    parts += [line.strip(' -') for line in shown.splitlines()
              if 'Math Kernel Library Version' in line or 'CPU capability usage' in line]
    return '; '.join(p for p in parts if p)


def import_library(job, row):
    """The library module of the row, and what to report about it."""
    if row.library == 'vugrad':
        directory = os.path.realpath(job['vugrad_dir'])
        sys.path.insert(0, directory)  # a work tree of dlvu/vugrad: the package is directory/vugrad
        import vugrad
        where = os.path.realpath(vugrad.__file__)
        if not where.startswith(directory + os.sep):
            raise RuntimeError(f'imported vugrad from {where}, not from --vugrad {directory}')
        return vugrad, {'vugrad': where}
    if row.library == 'vgrad':
        import vgrad
        return vgrad, {'vgrad': f'{vgrad.__version__} ({os.path.dirname(os.path.realpath(vgrad.__file__))})'}
    if row.library == 'torch':
        import torch
        torch.set_num_threads(job['threads'])
        return torch, {'torch': torch.__version__, 'torch_build': torch_build(torch)}
    if row.library == 'numpy':
        return None, {}
    raise ValueError(f'unknown library {row.library!r}')


def run_job(job):
    row, workload = Row(**job['row']), Workload.from_json(job['workload'])
    module, versions = import_library(job, row)
    import numpy as np
    versions['numpy'] = np.__version__
    versions['python'] = sys.version.split()[0]

    if workload.kind == 'peak':
        from benchmarks import peak
        return {**peak.run(workload), 'versions': versions, 'rss_before_kb': peak_rss_kb()}

    from benchmarks import inputs
    kept = churn_allocator() if row.churned else None  # noqa: F841 (the small arrays stay alive)
    data = inputs.load(job['inputs_dir'], workload)
    rss_before = peak_rss_kb()
    if row.library == 'torch':
        from benchmarks import torch_runner
        out = getattr(torch_runner, workload.kind)(workload, row, data)
    else:
        from benchmarks import course_runner
        out = getattr(course_runner, workload.kind)(module, workload, row, data)
    return {**out, 'versions': versions, 'rss_before_kb': rss_before}


def main(argv=None):
    job_path, result_path = sys.argv[1:] if argv is None else argv
    with open(job_path) as f:
        job = json.load(f)
    start = time.perf_counter()
    result = {'status': 'ok'}
    try:
        result.update(run_job(job))
    except NotAvailable as e:
        result.update(status='n/a', reason=str(e))
    except Exception as e:  # reported in the table; the other jobs go on
        result.update(status='error', reason=f'{type(e).__name__}: {e}', traceback=traceback.format_exc())
    result['rss_peak_kb'] = peak_rss_kb()
    result['threads'] = thread_info()
    result['wall_s'] = time.perf_counter() - start
    with open(result_path, 'w') as f:
        json.dump(result, f)


if __name__ == '__main__':
    main()
