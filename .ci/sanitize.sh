#!/usr/bin/env bash
# Builds vgrad._C with AddressSanitizer + UndefinedBehaviorSanitizer and runs the tests against that build.
#
#     .ci/sanitize.sh                      # the whole suite (minus what cannot run under ASan, see below)
#     .ci/sanitize.sh tests/test_ops.py -k Select      # any pytest arguments instead
#
# The build happens in a temporary copy of the repository, so the normal in-place build (vgrad/_C*.so) is
# untouched; the copy's vgrad/ comes first on sys.path, ahead of the editable install.
# pytest runs with --capture=sys: with its default fd capture, the report of a halted process would be lost.
# Python itself is not instrumented, so the ASan runtime is preloaded. Options and why:
#   PYTHONMALLOC=malloc           Python objects come from malloc, so ASan sees overflows into them too
#   detect_leaks=0                CPython leaves memory allocated at exit by design; leaks are tested
#                                 separately (tests/test_memory.py, .ci/valgrind.sh)
#   allocator_may_return_null=1   tests ask for absurd sizes (8 TiB) and expect MemoryError, not an abort
#   halt_on_error=1 (UBSan)       the first undefined behaviour ends the run with a non-zero status
# The script fails when pytest fails or when any sanitizer report appears in the output.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/vgrad-sanitize.XXXXXX")"
trap 'rm -rf "$work"' EXIT

tar -C "$repo" --exclude=.git --exclude=build --exclude='*.so' --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude='*.egg-info' --exclude=.benchmarks --exclude=.hypothesis -cf - . | tar -C "$work" -xf -
cd "$work"
# -fno-sanitize-recover: undefined behaviour aborts instead of printing and going on; -O1 keeps stacks useful.
VGRAD_SANITIZE=address,undefined CFLAGS="-O1 -fno-sanitize-recover=undefined" \
    python setup.py -q build_ext --inplace --build-temp "$work/build" >build.log 2>&1 || { cat build.log; exit 1; }
if ! nm -D vgrad/_C*.so | grep __asan_init >/dev/null; then
    echo "sanitize.sh: the extension was built without AddressSanitizer" >&2
    exit 1
fi

asan_lib="$(gcc -print-file-name=libasan.so)"
ubsan_lib="$(gcc -print-file-name=libubsan.so)"
if [ $# -eq 0 ]; then
    # test_sanitizers.py would start this script again; the torch comparisons load PyTorch's own native
    # code, which is not ours to sanitize (they are skipped when torch cannot be imported).
    set -- tests -p no:cacheprovider -q -x --ignore=tests/test_sanitizers.py -k "not torch"
fi
set +e
env LD_PRELOAD="$asan_lib $ubsan_lib" PYTHONMALLOC=malloc \
    ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=0:exitcode=86:log_path=$work/report" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=87:log_path=$work/report" \
    python -m pytest --capture=sys "$@" 2>&1 | tee pytest.log
status=${PIPESTATUS[0]}
set -e
# Reports go to files (report.<pid>): pytest captures the test's stderr, and a halted process never prints it.
# ASan also writes there its warnings that it refused an absurd allocation (the tests ask for 8 TiB on
# purpose and expect MemoryError); those are not reports of errors.
if ls "$work"/report.* >/dev/null 2>&1; then
    if grep -qvE "WARNING: AddressSanitizer failed to allocate" "$work"/report.*; then
        grep -vE "WARNING: AddressSanitizer failed to allocate" "$work"/report.*
        echo "sanitize.sh: sanitizer report found (exit status $status)" >&2
        exit 1
    fi
    echo "sanitize.sh: $(cat "$work"/report.* | wc -l) refused-allocation warnings (expected)"
fi
if grep -qE "ERROR: AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer" pytest.log; then
    echo "sanitize.sh: sanitizer report found" >&2
    exit 1
fi
exit "$status"
