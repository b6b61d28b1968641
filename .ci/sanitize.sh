#!/usr/bin/env bash
# Builds vgrad._C with AddressSanitizer + UndefinedBehaviorSanitizer and runs the tests against that build.
# CI (.ci/run) runs exactly this, with no arguments: what it runs is defined here and nowhere else.
#
#     .ci/sanitize.sh                      # the whole suite (minus what cannot run under ASan, see below)
#     .ci/sanitize.sh tests/test_ops.py -k Select      # any pytest arguments instead
#
# The build happens in a temporary copy of the repository, so the normal in-place build (vgrad/_C*.so) is
# untouched; the copy's vgrad/ comes first on sys.path, ahead of the editable install.
# pytest always runs with the hypothesis profile `ci` (tests/conftest.py: the same examples as CI's plain
# pytest run) and --capture=sys (with fd capture, the output of a halted process would be lost).
# .ci/sanitizers.py preloads the runtimes, sets their options (it says which and why) and fails the run on
# any sanitizer report; ASan's warnings that it refused an absurd allocation (the tests ask for 8 TiB on
# purpose) are counted, not failed. Exit status: non-zero on a test failure or on any report.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/vgrad-sanitize.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$SECONDS

tar -C "$repo" --exclude=.git --exclude=build --exclude='*.so' --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude='*.egg-info' --exclude=.benchmarks --exclude=.hypothesis -cf - . | tar -C "$work" -xf -
cd "$work"
# -fno-sanitize-recover: undefined behaviour aborts instead of printing and going on; -O1 keeps stacks useful.
VGRAD_SANITIZE=address,undefined CFLAGS="-O1 -fno-sanitize-recover=undefined" \
    python setup.py -q build_ext --inplace --build-temp "$work/build" >build.log 2>&1 || { cat build.log; exit 1; }
symbols="$(nm -D vgrad/_C*.so)"  # (not piped into grep -q: with pipefail, nm's SIGPIPE would fail the test)
if ! grep -q __asan_init <<<"$symbols" || ! grep -q __ubsan_handle <<<"$symbols"; then
    echo "sanitize.sh: the extension was built without AddressSanitizer and UndefinedBehaviorSanitizer" >&2
    exit 1
fi

if [ $# -eq 0 ]; then
    # The whole suite but: the PyTorch comparisons (they load PyTorch's own native code, which is not ours to
    # sanitize; skipped anyway where torch is missing), and the tests of these checks themselves (they start
    # valgrind and sanitized programs of their own, which must not inherit this run's preloaded runtimes).
    set -- tests -x --durations=10 -k "not torch" --ignore=tests/test_sanitizers.py --ignore=tests/test_memcheck.py
fi
python="$(python -c 'import sys; print(sys.executable)')"  # the interpreter itself, not a pyenv shim script
set +e
python "$work/.ci/sanitizers.py" --reports "$work/reports" -- \
    "$python" -m pytest --capture=sys -p no:cacheprovider --hypothesis-profile=ci "$@"
status=$?
set -e
echo "sanitize.sh: exit status $status after $((SECONDS - start)) s"
exit $status
