"""Runs a script written for vugrad on vgrad.

    python -m vgrad.as_vugrad script.py [args...]
    python -m vgrad.as_vugrad -m package.module [args...]

The script runs as ``__main__`` just as under ``python script.py`` (same sys.argv, sys.path[0] is its
directory), except that ``import vugrad`` and ``vugrad.core/ops/functions/modules/mnist`` give vgrad's
modules, even if the script puts a local vugrad/ folder on sys.path. Any other ``vugrad.X`` raises
ImportError. The script's exit code and tracebacks are its own.
"""
import builtins
import importlib
import importlib.abc
import importlib.machinery
import os
import runpy
import sys
import types

# vugrad module name -> vgrad module name
ALIASES = {
    "vugrad": "vgrad",
    "vugrad.core": "vgrad.core",
    "vugrad.ops": "vgrad.ops",
    "vugrad.functions": "vgrad.functions",
    "vugrad.modules": "vgrad.modules",
    "vugrad.mnist": "vgrad.data",
}

USAGE = "usage: python -m vgrad.as_vugrad (script.py | -m module) [args...]"


class _NoOtherVugrad(importlib.abc.MetaPathFinder):
    """Refuses every vugrad module that is not aliased, rather than letting a local copy load."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "vugrad" or fullname.startswith("vugrad."):
            raise ImportError(
                f"{fullname} is not provided by vgrad.as_vugrad (it maps only {', '.join(ALIASES)} "
                f"to vgrad); a script run this way cannot import another vugrad module",
                name=fullname,
            )
        return None


def install():
    """Makes ``vugrad`` and its submodules resolve to vgrad in this process."""
    for alias, target in ALIASES.items():
        module = importlib.import_module(target)
        sys.modules[alias] = module
        parent, _, child = alias.rpartition(".")
        if parent:
            # `import vugrad.mnist; vugrad.mnist.load()` looks the submodule up as an attribute.
            setattr(sys.modules[parent], child, module)
    if not any(isinstance(f, _NoOtherVugrad) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoOtherVugrad())


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
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
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

    install()
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
