#!/usr/bin/env bash
# Runs a part of the tests under valgrind's memcheck, against a build of vgrad._C with debug information
# made in a temporary copy of the repository (the normal in-place build is untouched).
# CI (.ci/run) runs exactly this, with no arguments: what it runs is defined here and nowhere else.
#
#     .ci/valgrind.sh                       # the default selection below (about 10 minutes on 2 cores)
#     .ci/valgrind.sh tests/test_ops.py -k Select      # any pytest arguments instead
#
# pytest always runs with the hypothesis profile `ci` (tests/conftest.py), as in every other run.
# .ci/memcheck.py runs valgrind (its options and environment are there, with the reasons) and decides which
# of memcheck's reports are vgrad's: those with a frame in vgrad's extension, in a file of csrc/ or in one of
# the extension's functions. Those fail the run (exit status 99) and are printed in full; reports only in the
# loader, libc or CPython are counted by top frame and do not. Exit status: non-zero on a test failure, on a
# report in vgrad, or when valgrind is missing or its log cannot be read.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v valgrind >/dev/null; then
    echo "valgrind.sh: valgrind is not installed (Debian: apt-get install valgrind); nothing was checked" >&2
    exit 2
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/vgrad-valgrind.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$SECONDS

tar -C "$repo" --exclude=.git --exclude=build --exclude='*.so' --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude='*.egg-info' --exclude=.benchmarks --exclude=.hypothesis -cf - . | tar -C "$work" -xf -
cd "$work"
CFLAGS="-g" python setup.py -q build_ext --inplace --build-temp "$work/build" >build.log 2>&1 || { cat build.log; exit 1; }

if [ $# -eq 0 ]; then
    # Every function vgrad._C exports is called, with valid arguments and with invalid ones, within about 10
    # minutes on the 2-core CI machine (python's start and the collection alone take 2 of them):
    #   test_memory.py      each entry point's valid call (op_table.c_calls lists every function), absurd
    #                       sizes refused
    #   test_ops.py         every op against its reference in float64 (zero-size and 0-d inputs included), in
    #                       float32 with negative strides, every error input, special values
    #   test_properties.py  each argument of each entry point replaced by None, an object array or a ragged
    #                       list (an error path each), and too few or too many arguments
    #   test_graph.py       the graph engine (vgrad/core.py compiled by Cython, and _C.add_into), but the
    #                       100,000-op chains
    #   test_properties_cnn.py  the convolution and pooling kernels on random shapes, strides and paddings,
    #                       and the convolution on 1 and 3 threads (the thread pool)
    # Left out, for time: the other layouts and dtypes (NumPy's conversions, the same kernels), the other kinds
    # of bad argument (the same error paths), test_cnn_ops.py (it imports PyTorch), and the other property
    # tests (each costs a minute or more here).
    set -- tests/test_memory.py::test_kernel_calls_leave_input_refcounts_unchanged \
        tests/test_memory.py::test_huge_sizes_are_refused tests/test_memory.py::test_huge_size_errors_leave_refcounts_unchanged \
        tests/test_ops.py::test_matches_reference tests/test_ops.py::test_layouts tests/test_ops.py::test_error_inputs \
        tests/test_ops.py::test_special_values_like_reference \
        tests/test_properties.py::test_bad_argument_raises_type_error tests/test_properties.py::test_wrong_number_of_arguments \
        tests/test_graph.py \
        tests/test_properties_cnn.py::test_conv2d tests/test_properties_cnn.py::test_conv2d_grad_bad_shapes \
        tests/test_properties_cnn.py::test_conv2d_gives_the_same_bits_whatever_the_thread_count \
        tests/test_properties_cnn.py::test_maxpool2d tests/test_properties_cnn.py::test_avgpool2d \
        -x --durations=10 -k "not deep_chain and not (matches_reference and f32) \
            and not (layouts and (f64 or not negative)) and not (bad_argument and not (none or object or ragged))"
fi
python="$(python -c 'import sys; print(sys.executable)')"  # the interpreter itself: valgrind would check a shim
set +e
python "$work/.ci/memcheck.py" --repo "$work" --log "$work/memcheck.log" -- \
    "$python" -m pytest -p no:cacheprovider --hypothesis-profile=ci "$@"
status=$?
set -e
if [ $status != 0 ]; then  # the temporary copy goes; memcheck's whole log stays for reading
    keep="${TMPDIR:-/tmp}/vgrad-memcheck.$(date +%Y%m%d-%H%M%S).log"
    cp "$work/memcheck.log" "$keep" 2>/dev/null && echo "valgrind.sh: memcheck's log: $keep"
fi
echo "valgrind.sh: exit status $status after $((SECONDS - start)) s"
exit $status
