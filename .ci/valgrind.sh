#!/usr/bin/env bash
# Runs a representative part of the tests under valgrind's memcheck, against a build of vgrad._C with debug
# information made in a temporary copy of the repository (the normal in-place build is untouched).
#
#     .ci/valgrind.sh                       # the default subset below (a few minutes)
#     .ci/valgrind.sh tests/test_ops.py -k Select      # any pytest arguments instead
#
# PYTHONMALLOC=malloc makes Python's objects visible to memcheck; leak checking is off because CPython and
# NumPy keep memory until exit by design (leaks are tested in tests/test_memory.py). One BLAS thread keeps
# the run deterministic. Fails on a test failure or on any memcheck error in vgrad._C (exit status 99).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/vgrad-valgrind.XXXXXX")"
trap 'rm -rf "$work"' EXIT

tar -C "$repo" --exclude=.git --exclude=build --exclude='*.so' --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude='*.egg-info' --exclude=.benchmarks --exclude=.hypothesis -cf - . | tar -C "$work" -xf -
cd "$work"
CFLAGS="-O1 -g" python setup.py -q build_ext --inplace --build-temp "$work/build" >build.log 2>&1 || { cat build.log; exit 1; }

if [ $# -eq 0 ]; then
    # every op against its reference in float64 (all samples: zero-size and 0-d included), every layout for
    # float32, every error input, bad dtypes, special values, and the C entry points' bad-argument and
    # reference-count tests
    set -- tests/test_ops.py tests/test_memory.py -p no:cacheprovider -q -x \
        -k "(matches_reference and f64) or (layouts and f32) or error_inputs or bad_dtypes or special_values or kernel_calls or error_paths"
fi
# Memcheck also reports in code that is not ours (the dynamic loader's strncmp, CPython's int.from_bytes on
# getrandom() bytes): those are listed by their top frame but do not fail the run. An error whose stack
# passes through vgrad._C (csrc/) does.
set +e
env PYTHONMALLOC=malloc OPENBLAS_NUM_THREADS=1 \
    valgrind --tool=memcheck --leak-check=no --track-origins=yes --num-callers=40 --log-file="$work/memcheck.log" \
    "$(python -c "import sys; print(sys.executable)")" -m pytest "$@"
status=$?
set -e
python - "$work/memcheck.log" <<'PY'
import re, sys
blocks = re.split(r"^==\d+== \n", open(sys.argv[1]).read(), flags=re.M)
errors = [b for b in blocks if re.search(r"^==\d+== (Invalid|Conditional|Use of|Syscall|Mismatched|Source and)", b, re.M)]
ours = [b for b in errors if "_C.cpython" in b or "csrc/" in b]
for b in ours:
    print(b)
tops = {}
for b in errors:
    m = re.search(r"^==\d+== +(?:at|by) 0x[0-9A-F]+: (\S+) \(([^)]*)\)", b, re.M)
    key = f"{m.group(1)} ({m.group(2)})" if m else "?"
    tops[key] = tops.get(key, 0) + 1
print(f"memcheck: {len(errors)} error reports, {len(ours)} in vgrad._C")
for key, n in sorted(tops.items(), key=lambda kv: -kv[1]):
    print(f"    {n:4d} x {key}")
sys.exit(99 if ours else 0)
PY
exit $status
