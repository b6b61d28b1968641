"""The ImportError for a vgrad whose C extension was never built (or was built without a function it lists):
what happened, and what to run.

The usual way to get there: `pip install .` installs a built copy into site-packages, and then a command run
from the repository's root (`python -m vgrad.as_vugrad ...`, a notebook started there) imports the source
folder ./vgrad instead, which Python finds first and which has no vgrad/_C*.so. Python's own message for it
("cannot import name '_C' from partially initialized module 'vgrad' (most likely due to a circular import)")
points the wrong way.
"""
import importlib.machinery
import os
import re
import sys


def _installed_elsewhere(here):
    """The folder of another vgrad on sys.path that has its extension built, or None."""
    for entry in sys.path:
        folder = os.path.join(entry or os.getcwd(), 'vgrad')
        if os.path.realpath(folder) == os.path.realpath(here) or not os.path.isdir(folder):
            continue
        if any(name.startswith('_C.') and name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
               for name in os.listdir(folder)):
            return folder
    return None


def missing_extension(error):
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    undefined = re.search(r'undefined symbol: vg_(\w+)', str(error))
    if undefined:  # built, but a function listed in csrc/functions.def has no definition (the linker allows that)
        name = undefined.group(1)
        return ImportError(f"vgrad._C was built, but without the function {name} that csrc/functions.def lists: "
                           f"define it with VG_BOUNDARY({name}) in a file of csrc/ (an element-wise op: in its section "
                           f"of csrc/elementwise_kernels.h), or remove its VG_FUNC line, then rebuild with "
                           f"`pip install -e .` in {root} ({error})", name='vgrad._C')
    message = (f"vgrad's C extension (vgrad._C) is not built in {here}: this is the source folder. "
               f"Build it in place with `pip install -e .` in {root} (a C compiler and Python's headers are "
               f"needed: gcc and python3-dev on Debian).")
    other = _installed_elsewhere(here)
    if other is not None:
        message += (f" A built vgrad is installed in {other}, but Python found the source folder first because "
                    f"you are running from {root}: run from another folder, or use `pip install -e .` there.")
    return ImportError(f"{message} ({error})", name='vgrad._C')
