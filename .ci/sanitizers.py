#!/usr/bin/env python3
"""Runs a command with the AddressSanitizer and UndefinedBehaviorSanitizer runtimes and judges their reports.

    python .ci/sanitizers.py --reports DIR -- COMMAND...

.ci/sanitize.sh runs the tests this way, against a build of vgrad._C made with -fsanitize=address,undefined;
tests/test_sanitizers.py imports this file and runs it on a throwaway extension with a heap overflow and a
signed overflow, and on canned reports.

Python itself is not instrumented, so the runtimes are preloaded. The environment and why:
  PYTHONMALLOC=malloc           Python objects come from malloc, so ASan sees overflows into them too
  PYTHONUNBUFFERED=1            the output goes through a pipe to be scanned; it is passed on as it comes
  detect_leaks=0                CPython leaves memory allocated at exit by design; leaks are tested
                                separately (tests/test_memory.py)
  allocator_may_return_null=1   tests ask for absurd sizes (8 TiB) on purpose and expect MemoryError, not an
                                abort; ASan still writes a "failed to allocate" warning for each, tolerated
  halt_on_error=1               the first error ends the process (with -fno-sanitize-recover=undefined at
                                build time, undefined behaviour too), with exit status 86 (ASan), 87 (UBSan)
  log_path=DIR/report           ASan's reports go to files DIR/report.<pid>: the command may capture its own
                                stderr, and a halted process never prints what it captured. (gcc 12's UBSan
                                writes to stderr all the same: the output is scanned for reports as well.)
Exit status: 1 when a report is found (the reports are printed), else the command's own status.
"""
import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

# The only lines the runtimes may write without failing the run: refused absurd allocations.
TOLERATED = re.compile(r"^(==\d+==)?WARNING: AddressSanitizer failed to allocate 0x[0-9a-fA-F]+ bytes\s*$")
# A report that went to the output instead of a file (the runtime could not open its log) still counts.
IN_OUTPUT = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:")
EXIT_REPORT = 1


def runtimes():
    """The paths of gcc's ASan and UBSan runtimes (SystemExit when gcc has none)."""
    paths = []
    for lib in ("libasan.so", "libubsan.so"):
        try:
            path = subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
        except FileNotFoundError:
            path = ""
        if not (os.path.isabs(path) and os.path.exists(path)):
            raise SystemExit(f"sanitizers.py: gcc's {lib} is missing (Debian: apt-get install gcc)")
        paths.append(path)
    return paths


def environment(reports, base=None):
    """The environment of a sanitized run whose reports go to reports/report.<pid>."""
    log = os.path.join(reports, "report")
    env = dict(os.environ if base is None else base)
    env.update({
        "LD_PRELOAD": " ".join(runtimes()),
        "PYTHONMALLOC": "malloc",
        "PYTHONUNBUFFERED": "1",  # the output is a pipe (scanned here): pass it on as it comes
        "ASAN_OPTIONS": f"detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=0:exitcode=86"
                        f":log_path={log}",
        "UBSAN_OPTIONS": f"halt_on_error=1:print_stacktrace=1:exitcode=87:log_path={log}",
    })
    return env


def judge(reports, output="", out=None):
    """(number of reports, number of tolerated warnings); prints the reports."""
    out = out or sys.stdout
    found, tolerated = 0, 0
    for path in sorted(Path(reports).glob("report.*")):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        bad = [ln for ln in lines if not TOLERATED.match(ln)]
        tolerated += len(lines) - len(bad)
        if bad:
            found += 1
            print(f"---- {path.name}", file=out)
            print("\n".join(lines), file=out)
    for line in output.splitlines():
        if IN_OUTPUT.search(line):
            found += 1
            print(f"---- in the output: {line}", file=out)
    return found, tolerated


def run(command, reports, env=None, out=None):
    """Runs command (its output passed through), then judges; EXIT_REPORT or the command's status."""
    out = out or sys.stdout
    os.makedirs(reports, exist_ok=True)
    proc = subprocess.Popen(command, env=environment(reports, env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    seen = []
    for line in proc.stdout:
        out.write(line)
        out.flush()
        if IN_OUTPUT.search(line):
            seen.append(line)
    status = proc.wait()
    found, tolerated = judge(reports, "".join(seen), out=out)
    if found:
        print(f"sanitizers: {found} sanitizer report(s) (the command's exit status: {status})", file=out)
        return EXIT_REPORT
    print(f"sanitizers: no reports; {tolerated} refused-allocation warnings (expected: tests ask for 8 TiB)",
          file=out)
    return status


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reports", required=True, help="an empty directory for the runtimes' reports")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND...")
    a = p.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        p.error("give a command after --")
    return run(command, a.reports)


if __name__ == "__main__":
    sys.exit(main())
