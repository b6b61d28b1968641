"""Builds the C extension vgrad._C and the compiled graph engine vgrad.core; everything else is declared in
pyproject.toml."""
import glob
import os
import sys

import numpy as np
from setuptools import Extension, setup

# Warnings are errors in CI (CI=true) and when asked for (VGRAD_WERROR=1), never in a user's install.
# -O3 (not -ffast-math) lets GCC vectorise the loops; csrc/vexp.c relies on it. -ffp-contract=off (already
# the default of -std=c11, said here so that it stays): no a * b + c may become a fused multiply-add, which
# rounds once instead of twice and would break the bit-identity of float64 results with NumPy's.
extra = ["-std=c11", "-O3", "-ffp-contract=off", "-Wall", "-Wextra", "-Wno-unused-parameter"]
if os.environ.get("VGRAD_WERROR") or os.environ.get("CI") == "true":
    extra.append("-Werror")
# A sanitizer build for the reliability checks: VGRAD_SANITIZE="address,undefined".
link_extra = []
sanitize = []
if os.environ.get("VGRAD_SANITIZE"):
    sanitize = ["-fsanitize=" + os.environ["VGRAD_SANITIZE"], "-fno-omit-frame-pointer", "-g"]
    extra += sanitize
    link_extra += sanitize


def graph_engine():
    """vgrad/core.py compiled by Cython (core.pxd declares its types): the graph machinery without the
    interpreter's cost per step. The generated C is Cython's, so the project's warning flags are not applied
    to it. Without Cython, core.py runs as the Python it is (slower, same results)."""
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("vgrad: Cython is not installed; vgrad/core.py will run as Python (pip install cython for the "
              "compiled graph engine)", file=sys.stderr)
        return []
    flags = ["-O2"] + (sanitize if os.environ.get("VGRAD_SANITIZE") else [])
    return cythonize(
        [Extension("vgrad.core", ["vgrad/core.py"], extra_compile_args=flags, extra_link_args=link_extra)],
        build_dir="build/cython",
        compiler_directives={"language_level": 3, "binding": True, "embedsignature": True},
        quiet=True,
    )


setup(
    ext_modules=[
        Extension(
            "vgrad._C",
            sources=sorted(glob.glob("csrc/*.c")),
            depends=sorted(glob.glob("csrc/*.h") + glob.glob("csrc/*.def")),
            include_dirs=[np.get_include(), "csrc"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
            extra_compile_args=extra,
            extra_link_args=link_extra,
        )
    ] + graph_engine(),
)
