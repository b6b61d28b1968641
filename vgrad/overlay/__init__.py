"""
The overlay behind `python -m vgrad.as_vugrad`: a student's own vugrad package, run as written on vgrad's
graph machinery, with its unchanged upstream definitions on vgrad's C kernels.

    fingerprint.py   hashes of normalised syntax trees; the global names a definition uses
    upstream.json    the fingerprints of every upstream vugrad revision (regenerate.py writes it)
    upstream.py      questions about them
    equivalents.py   vgrad's equivalent of each upstream definition, with its revision's semantics
    analysis.py      reads a package and decides, definition by definition, what runs
    loader.py        the import hook that loads the package that way
    check.py         --check: the student's backward against central differences
"""
import sys

from . import loader


def _report(summary, table):
    print(summary, file=sys.stderr, flush=True)
    if table:
        print(table, file=sys.stderr, flush=True)


def install(plain=False, check=False, explain=False, quiet=False, _child=False):
    """Makes `import vugrad` give the student's package on vgrad's machinery (or vgrad itself, when there is
    no package or plain is True) in this process and in the worker processes it starts. The summary line
    goes to stderr unless quiet (or in a worker: the parent said it); explain adds the table."""
    finder = loader.install(plain=plain, report=None if (quiet or _child) else _report, explain=explain)
    if check:
        from . import check as checker
        checker.install()
    _carry_to_spawned_children(dict(plain=plain, check=check, explain=explain, quiet=quiet))
    return finder


class _Stowaway:
    """Travels to spawned and forkserver worker processes inside multiprocessing's preparation data;
    unpickling it there installs the overlay before the worker re-imports the script's main module. (Forked
    workers inherit the overlay with the rest of the process.)"""

    def __init__(self, options):
        self.options = options

    def __getstate__(self):
        return self.options

    def __setstate__(self, options):
        self.options = options
        install(**options, _child=True)


def _carry_to_spawned_children(options):
    import multiprocessing.spawn as spawn
    original = getattr(spawn.get_preparation_data, '__vgrad_original__', spawn.get_preparation_data)

    def get_preparation_data(name):
        data = original(name)
        data['vgrad_overlay'] = _Stowaway(options)
        return data

    get_preparation_data.__vgrad_original__ = original
    spawn.get_preparation_data = get_preparation_data
