"""
What the report says about where it was measured: the CPU, cores, memory and load, the versions of the
libraries (read without importing them), and the git state of the trees measured.
"""
import os
import platform
import subprocess
import sys
from importlib import metadata


def _first_line_with(path, prefix):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return None


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_info():
    mem_kb = _first_line_with('/proc/meminfo', 'MemTotal')
    return {
        'cpu': _first_line_with('/proc/cpuinfo', 'model name') or platform.processor() or platform.machine(),
        'logical_cpus': os.cpu_count(),
        'available_cores': available_cores(),
        'memory_gb': round(int(mem_kb.split()[0]) / 2 ** 20, 1) if mem_kb else None,
        'os': platform.platform(),
        'loadavg': list(os.getloadavg()) if hasattr(os, 'getloadavg') else None,
    }


def package_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions():
    return {'python': sys.version.split()[0],
            **{name: package_version(name) for name in ('numpy', 'torch', 'threadpoolctl', 'matplotlib')}}


def git_state(directory):
    """'<short commit>' or '<short commit> + uncommitted changes' of a git work tree, or None."""
    def git(*args):
        return subprocess.run(['git', '-C', directory, *args], capture_output=True, text=True, timeout=30)
    try:
        head = git('rev-parse', '--short', 'HEAD')
        if head.returncode != 0:
            return None
        dirty = git('status', '--porcelain', '--untracked-files=no').stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + (' + uncommitted changes' if dirty else '')
