#!/usr/bin/env python3
"""Runs a command under valgrind's memcheck and decides which of memcheck's error reports are vgrad's.

    python .ci/memcheck.py --repo DIR --log FILE -- COMMAND...   # run COMMAND under memcheck, then judge
    python .ci/memcheck.py --repo DIR LOG                         # judge an existing memcheck log

.ci/valgrind.sh runs the tests this way; tests/test_memcheck.py imports this file and runs it on a canned log
and on a throwaway extension that writes out of bounds and reads uninitialised memory.

A report is vgrad's when any frame of any of its stacks (where the error happened, and where the block was
allocated or freed, or the uninitialised value created) is one of vgrad's. A frame is vgrad's when
  - its object is vgrad's extension: `by 0x...: ??? (in /.../vgrad/_C.cpython-311-x86_64-linux-gnu.so)`,
    as valgrind prints frames without debug information; or
  - its source file is one of the files in csrc/ (their names are read from the repository at run time):
    `at 0x...: im2col_f64 (conv.c:128)` as valgrind prints files by default, by their base name, or
    `im2col_f64 (csrc/conv.c:128)` as run() has it print them: with --fullpath-after=REPO/, vgrad's files
    are csrc/NAME and everyone else's full paths, so NumPy's own shape.c or convert.c (when NumPy has debug
    information) cannot pass for vgrad's; or
  - its function is one the extension defines (read from its symbol table with nm), and the frame names no
    other object.
All stacks count because a reference-count bug in vgrad shows up as an invalid read in CPython of a block
that vgrad's code freed, and an output vgrad left uninitialised as a jump in NumPy that depends on it.
Reports whose frames are all elsewhere (the dynamic loader, libc, CPython, NumPy) are listed by their top
frame but do not fail the run: they are not ours to fix.

Exit status: 99 when a report is vgrad's; 2 when the log cannot be trusted (valgrind did not run, or
printed error reports this file could not read); otherwise the command's own status.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The memcheck options of every run (the test suite's and the throwaway extension's in the tests).
#   --leak-check=no        CPython and NumPy keep memory until exit by design (tests/test_memory.py checks
#                          vgrad's references and allocations instead)
#   --track-origins=yes    an uninitialised read names the allocation it came from (often vgrad's output)
#   --num-callers=40       deep enough to reach vgrad's frames below CPython's call machinery
#   --fullpath-after=REPO/ (added by run()) source files as csrc/conv.c, not conv.c: see the docstring
#   --error-exitcode       not used: the decision is this file's, from the log
VALGRIND_OPTIONS = ["--tool=memcheck", "--leak-check=no", "--track-origins=yes", "--num-callers=40"]
# The environment of every run: Python's objects come from malloc, so memcheck sees overflows into them; one
# BLAS thread keeps the run deterministic (and memcheck serialises threads anyway); unbuffered output shows
# a slow run's progress in CI's log as it happens.
VALGRIND_ENV = {"PYTHONMALLOC": "malloc", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1"}

EXIT_OURS = 99
EXIT_UNTRUSTED = 2

_LINE = re.compile(r"^==(\d+)== ?(.*)$")
_FRAME = re.compile(r"^\s+(?:at|by) 0x[0-9A-Fa-f]+: (.*)$")
_WHERE = re.compile(r"^(.*?) \(([^()]*)\)$")
_FILE_LINE = re.compile(r"^(.*):(\d+)$")
_SUMMARY = re.compile(r"^ERROR SUMMARY: (\d+) errors? from (\d+) contexts?")
# Blocks that carry a stack but are not memcheck error reports (and are not counted in ERROR SUMMARY).
_NOT_ERRORS = re.compile(r"^(Warning: |WARNING: |HEAP SUMMARY|LEAK SUMMARY|For lists of detected|Memcheck, "
                         r"|Copyright |Using Valgrind|Command: |Parent PID)")
_CRASH = re.compile(r"^Process terminating with default action of signal")
# Symbols of every shared object, not functions of vgrad's own.
_CRT = {"frame_dummy", "deregister_tm_clones", "register_tm_clones", "PyInit__C"}
# vgrad's extension modules as valgrind names their objects: vgrad/_C.cpython-311-x86_64-linux-gnu.so (the
# kernels), vgrad/core.cpython-311-x86_64-linux-gnu.so (the graph engine, vgrad/core.py compiled by Cython)
_EXTENSION_NAME = re.compile(r"(^|/)vgrad/(_C|core)(\.[^/]*)?\.so$")
# The C file Cython generates from vgrad/core.py (setup.py: build/cython/vgrad/core.c)
_GENERATED = "cython/vgrad/core.c"


@dataclass
class Frame:
    function: str
    file: str = ""  # base name (or path) of the source file, when valgrind has debug information
    line: int = 0
    obj: str = ""  # the shared object, when valgrind has no debug information for the frame

    def __str__(self):
        where = f"{self.file}:{self.line}" if self.file else f"in {self.obj}" if self.obj else "?"
        return f"{self.function} ({where})"


@dataclass
class Report:
    pid: int
    kind: str  # the report's first line: "Invalid write of size 8"
    lines: list = field(default_factory=list)  # the whole report as valgrind printed it
    frames: list = field(default_factory=list)  # every frame of every stack in the report

    @property
    def crash(self):
        return bool(_CRASH.match(self.kind))

    @property
    def top(self):
        return str(self.frames[0]) if self.frames else "?"

    def __str__(self):
        return "\n".join(f"=={self.pid}== {line}" for line in self.lines)


@dataclass
class Log:
    reports: list  # error reports (and crashes), in the order printed
    summaries: dict  # pid -> m of its "ERROR SUMMARY: n errors from m contexts"
    main: int  # the pid that printed valgrind's banner (0: none did)

    @property
    def started(self):
        return bool(self.main)

    def unread(self):
        """Processes whose ERROR SUMMARY counts more contexts than reports were read for them: valgrind prints
        each context once, so these are reports in a format this file does not know. A process forked under
        valgrind (a failed exec in subprocess) inherits its parent's contexts, which the parent printed."""
        read = {}
        for r in self.reports:
            if not r.crash:
                read[r.pid] = read.get(r.pid, 0) + 1
        unread = {}
        for pid, counted in self.summaries.items():
            if pid == self.main:
                if counted != read.get(pid, 0):
                    unread[pid] = (counted, read.get(pid, 0))
            elif counted > read.get(pid, 0) + read.get(self.main, 0):
                unread[pid] = (counted, read.get(pid, 0) + read.get(self.main, 0))
        return unread


def parse_frame(text):
    """`im2col_f64 (conv.c:128)`, `??? (in /usr/lib/libc.so.6)`, `malloc (vg_replace_malloc.c:381)`."""
    m = _WHERE.match(text)
    if not m:
        return Frame(text.strip())
    function, where = m.groups()
    if where.startswith("in "):
        return Frame(function, obj=where[3:])
    fl = _FILE_LINE.match(where)
    if fl:
        return Frame(function, file=fl.group(1), line=int(fl.group(2)))
    return Frame(function, file=where)


def parse(text):
    """The error reports in a memcheck log (several processes' logs may be interleaved)."""
    blocks = {}  # pid -> the lines of the block being read
    reports, summaries, main = [], {}, 0

    def finish(pid):
        lines = blocks.pop(pid, [])
        while lines and re.match(r"^Thread \d+", lines[0]):  # "Thread 2:" precedes a report from another thread
            lines = lines[1:]
        if not lines or lines[0].startswith(" "):
            return
        frames = [parse_frame(m.group(1)) for m in map(_FRAME.match, lines) if m]
        if frames and not _NOT_ERRORS.match(lines[0]):
            reports.append(Report(pid, lines[0].strip(), lines, frames))

    for raw in text.splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        pid, body = int(m.group(1)), m.group(2)
        if body.startswith("Memcheck, a memory error detector"):
            main = main or pid
        s = _SUMMARY.match(body)
        if s:
            summaries[pid] = int(s.group(2))
        if body.strip():
            blocks.setdefault(pid, []).append(body)
        else:
            finish(pid)
    for pid in list(blocks):
        finish(pid)
    return Log(reports, summaries, main)


@dataclass
class Ours:
    """What counts as vgrad's: the files in csrc/, the extension's paths and the functions it defines."""
    files: frozenset
    objects: frozenset = frozenset()
    functions: frozenset = frozenset()
    root: str = ""  # the repository, for --fullpath-after

    @classmethod
    def from_repo(cls, repo, extensions=None):
        repo = Path(repo)
        files = frozenset(p.name for p in (repo / "csrc").iterdir() if p.is_file())
        if not files:
            raise SystemExit(f"memcheck.py: no files in {repo / 'csrc'}")
        if extensions is None:
            extensions = sorted((repo / "vgrad").glob("_C*.so")) + sorted((repo / "vgrad").glob("core*.so"))
        functions = set()
        for so in extensions:
            functions |= defined_functions(so, files)
        return cls(files, frozenset(os.path.realpath(so) for so in extensions), frozenset(functions),
                   str(repo.resolve()))

    def frame(self, f):
        if f.obj:
            return os.path.realpath(f.obj) in self.objects or bool(_EXTENSION_NAME.search(f.obj))
        if f.file:
            # a bare base name (valgrind's default), or a path that ends in csrc/<name> (--fullpath-after)
            base = f.file.rsplit("/", 1)[-1]
            if f.file.endswith(_GENERATED):
                return True
            return base in self.files and ("/" not in f.file or f.file.endswith("csrc/" + base))
        # Only a frame that names neither a file nor an object is judged by its function's name: CPython's
        # inline functions (Py_INCREF) are compiled into the extension too, so its symbol table has them.
        return f.function.split(".")[0] in self.functions

    def report(self, r):
        return any(self.frame(f) for f in r.frames)

    def where(self, r):
        """The report's first frame of vgrad's, else its top frame."""
        return next((str(f) for f in r.frames if self.frame(f)), r.top)


def defined_functions(so, files):
    """The functions the extension defines in csrc/'s files, by name (static ones too, unless stripped). With
    debug information nm names each symbol's file, which leaves out the CPython and NumPy header functions
    (Py_INCREF) an unoptimised build compiles in; without it, every function symbol but the C runtime's."""
    nm = shutil.which("nm")
    if nm is None:
        return set()
    out = subprocess.run([nm, "-l", "--defined-only", str(so)], capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        symbol, _, where = line.partition("\t")
        parts = symbol.split()
        if len(parts) != 3 or parts[1] not in "tTwW" or parts[2].startswith("_") or parts[2] in _CRT:
            continue
        source = where.rsplit(":", 1)[0] if where else ""
        if not source or Path(source).name in files:
            names.add(parts[2].split(".")[0])
    return names


def judge(log_text, ours, out=None):
    """Prints vgrad's reports in full and a count of all by top frame; returns 0, EXIT_OURS or
    EXIT_UNTRUSTED."""
    out = out or sys.stdout
    log = parse(log_text)
    if not log.started:
        print("memcheck: the log has no valgrind banner; valgrind did not run", file=out)
        return EXIT_UNTRUSTED
    errors = [r for r in log.reports if not r.crash]
    mine = [r for r in log.reports if ours.report(r)]
    for r in mine:
        print(r, file=out)
        print("", file=out)
    tops = {}
    for r in log.reports:
        key = ("vgrad: " if ours.report(r) else "") + f"{r.kind.split(' of size')[0]} at {ours.where(r)}"
        tops[key] = tops.get(key, 0) + 1
    print(f"memcheck: {len(errors)} error reports, {len(mine)} of them in vgrad "
          f"(csrc/ files: {len(ours.files)}, extension functions: {len(ours.functions)})", file=out)
    for key, n in sorted(tops.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"    {n:4d} x {key}", file=out)
    if mine:
        return EXIT_OURS
    # valgrind prints each context once; a count that differs means reports this parser did not recognise
    for pid, (counted, read) in log.unread().items():
        print(f"memcheck: process {pid}'s ERROR SUMMARY counts {counted} contexts, but {read} reports were read "
              "from the log; the log's format is not understood", file=out)
        return EXIT_UNTRUSTED
    return 0


def run(command, log, ours, env=None, out=None):
    """Runs command under memcheck (its log to `log`) and judges the log: the command's status if it
    failed, else judge()'s."""
    out = out or sys.stdout
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("memcheck: valgrind is not installed (Debian: apt-get install valgrind); nothing was checked",
              file=out)
        return EXIT_UNTRUSTED
    program = shutil.which(command[0]) or command[0]
    with open(program, "rb") as f:
        if f.read(4) != b"\x7fELF":  # a pyenv shim is a shell script: valgrind would check bash, not Python
            print(f"memcheck: {program} is not a program but a script; give the interpreter itself "
                  "(sys.executable)", file=out)
            return EXIT_UNTRUSTED
    full_env = dict(os.environ if env is None else env, **VALGRIND_ENV)
    paths = [f"--fullpath-after={ours.root.rstrip('/')}/"] if ours.root else []
    status = subprocess.run([valgrind, *VALGRIND_OPTIONS, *paths, f"--log-file={log}", *command],
                            env=full_env).returncode
    verdict = judge(Path(log).read_text(errors="replace") if Path(log).exists() else "", ours, out=out)
    return verdict or status


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", default=Path(__file__).resolve().parents[1], help="the repository (its csrc/, vgrad/)")
    p.add_argument("--extension", action="append", help="the extension module (default: REPO/vgrad/_C*.so)")
    p.add_argument("--log", help="with a command: where memcheck writes its log")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="LOG to judge, or -- COMMAND... to run")
    a = p.parse_args(argv)
    ours = Ours.from_repo(a.repo, a.extension)
    rest = a.rest[1:] if a.rest[:1] == ["--"] else a.rest
    if a.log:
        if not rest:
            p.error("--log needs a command after --")
        return run(rest, a.log, ours)
    if len(rest) != 1:
        p.error("give a log to judge, or --log FILE -- COMMAND...")
    return judge(Path(rest[0]).read_text(errors="replace"), ours)


if __name__ == "__main__":
    sys.exit(main())
