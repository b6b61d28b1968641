"""Runs a script written for vugrad on vgrad: your own vugrad, accelerated.

    python -m vgrad.as_vugrad [options] script.py [args...]
    python -m vgrad.as_vugrad [options] -m package.module [args...]

The script runs as ``__main__`` just as under ``python script.py`` (same sys.argv; sys.path[0] is its
folder, or the working directory with -m). When it imports ``vugrad``, the package it would have found
(in its folder, a ``_context.py`` sys.path entry, PYTHONPATH, the working directory, an installed copy) is
loaded file by file and runs as written, with two changes: the graph machinery (TensorNode, OpNode, Op) is
vgrad's, so every op of yours runs in vgrad's graph; and every definition that is unchanged from a known
upstream vugrad revision, and uses nothing you changed, runs on vgrad's C kernels. Your new and changed
ops, modules, loaders and submodules stay yours, right or wrong; names your package lacks come from vgrad.
One line on stderr says what happened. With no vugrad package to be found, ``vugrad`` is vgrad.

Options:
    --explain   print the table of every definition of your package: what runs, and why
    --check     the first time each op of yours runs backward, compare its gradient with central
                differences on that call's inputs (float64); a table per op that disagrees, on stderr
    --plain     ignore any vugrad package: vugrad and its submodules core, ops, functions, modules and
                mnist are vgrad's (other submodules cannot be imported)
    --quiet     do not print the summary line

In Jupyter, ``%load_ext vgrad.as_vugrad`` does the same for the notebook's ``import vugrad``.
The script's exit code and tracebacks are its own. Worker processes started by multiprocessing (fork,
spawn or forkserver) see the same vugrad as the script.
"""
import builtins
import importlib.machinery
import os
import runpy
import sys
import types

from . import overlay
from .overlay import loader

USAGE = "usage: python -m vgrad.as_vugrad [--explain] [--check] [--plain] [--quiet] (script.py | -m module) [args...]"
OPTIONS = ('--explain', '--check', '--plain', '--quiet')
ALIASES = loader.ALIASES


def load_ipython_extension(ipython):
    """``%load_ext vgrad.as_vugrad``: the overlay for this kernel."""
    install()


install = overlay.install


def _run_script(path):
    """Runs the file at ``path`` as ``__main__`` the way ``python path`` does."""
    if not os.path.isfile(path):  # a directory or zip file with a __main__.py
        runpy.run_path(path, run_name="__main__")
        return
    # `python script.py` puts the script's real directory first on sys.path and gives an absolute
    # __file__, while sys.argv[0] stays as typed.
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    abspath = os.path.abspath(path)
    with open(abspath, "rb") as f:
        code = compile(f.read(), abspath, "exec", dont_inherit=True)
    main_module = types.ModuleType("__main__")
    main_module.__file__ = abspath
    main_module.__builtins__ = builtins
    main_module.__loader__ = importlib.machinery.SourceFileLoader("__main__", abspath)
    main_module.__spec__ = None
    sys.modules["__main__"] = main_module
    exec(code, main_module.__dict__)


def _run(target, is_module):
    if is_module:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        _run_script(target)


def _script_frames(tb):
    """Drops the leading traceback entries that belong to this runner and to runpy."""
    own = {main.__code__, _run.__code__, _run_script.__code__}
    while tb is not None and (tb.tb_frame.f_code in own or tb.tb_frame.f_globals is vars(runpy)):
        tb = tb.tb_next
    return tb


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    options = set()
    while argv and argv[0] in OPTIONS:
        options.add(argv.pop(0)[2:])
    if not argv or argv[0].startswith("--"):
        if argv:
            print(f"vgrad.as_vugrad: unknown option {argv[0]!r}", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    is_module = argv[0] == "-m"
    if is_module:
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        argv = argv[1:]
    target = argv[0]
    if not is_module and not os.path.exists(target):
        print(f"vgrad.as_vugrad: can't open file {target!r}: no such file", file=sys.stderr)
        return 2

    install(**{name: True for name in options})
    sys.argv = argv
    try:
        _run(target, is_module)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as e:
        tb = _script_frames(e.__traceback__)
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
