"""The layout of csrc/ that a reader relies on (csrc/vgrad.h describes it):

- every kernel a boundary function calls is an ordinary function that `grep <name>` finds: defined in a
  kernel template as VG_T(<name>) (instantiate.h compiles it for float and double) or written out as
  <name>_f32 and <name>_f64, never made by token pasting inside a macro body;
- each op's backward kernel follows its forward kernel in the same template;
- the kernel templates, and the files that instantiate them, have no macro bodies continued with `\\`;
- vgrad.h's map of the files names every file of csrc/.

Every file with kernels instantiates them through instantiate.h; none makes them with a macro any more."""

import pathlib
import re

import pytest

CSRC = pathlib.Path(__file__).resolve().parents[1] / "csrc"


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


def templates():
    """The kernel templates: the headers that a file passes to instantiate.h as VG_TEMPLATE."""
    names = set()
    for f in sorted(CSRC.iterdir()):
        if f.suffix in (".c", ".h"):
            names.update(re.findall(r'#define\s+VG_TEMPLATE\s+"([^"]+)"', strip_comments(f.read_text())))
    return sorted(names)


def instantiating_files():
    return sorted(f.name for f in CSRC.glob("*.c") if '#include "instantiate.h"' in f.read_text())


def defined_kernels(name):
    """Kernel definitions (with a body) in a template, in the order of the file: [(kernel, line), ...]."""
    text = strip_comments((CSRC / name).read_text())
    found = []
    for m in re.finditer(r"^[A-Za-z_][\w ]*\bVG_T\((\w+)\)\s*\([^;{]*\)\s*\{", text, flags=re.M):
        found.append((m.group(1), text.count("\n", 0, m.start()) + 1))
    return found


def test_there_are_templates_and_files_that_use_them():
    # a check of the checks below: if the patterns stopped matching, they would pass on nothing
    assert {"elementwise_kernels.h", "fused_kernels.h", "rows_kernels.h"} <= set(templates())
    assert {"elementwise.c", "fused.c", "rows.c"} <= set(instantiating_files())
    called = "\n".join((CSRC / f).read_text() for f in ("elementwise_kernels.h", "fused.c"))
    assert "KERNEL(binary_kernel, mul_forward)" in called and "VG_CALL(c.type, logsoftmax_forward" in called
    assert "sigmoid_backward" in [k for k, _ in defined_kernels("elementwise_kernels.h")]


@pytest.mark.parametrize("source", instantiating_files() + templates())
def test_every_called_kernel_is_a_function_grep_finds(source):
    text = re.sub(r"^\s*#define.*$", "", strip_comments((CSRC / source).read_text()), flags=re.M)
    called = set(re.findall(r"\bVG_CALL\([^,]+,\s*(\w+)", text)) | set(re.findall(r"\bKERNEL\(\w+,\s*(\w+)\)", text))
    every_template = {k for t in templates() for k, _ in defined_kernels(t)}
    everything = "\n".join(strip_comments(f.read_text()) for f in CSRC.iterdir() if f.suffix in (".c", ".h"))
    missing = [
        k
        for k in sorted(called)
        if k not in every_template
        and not all(re.search(rf"^[\w ]*\b{k}_{s}\([^;]*\)\s*\{{", everything, flags=re.M) for s in ("f32", "f64"))
    ]
    assert not missing, f"{source} calls kernels with no plain definition in csrc/: {missing}"


@pytest.mark.parametrize("template", templates())
def test_backward_follows_its_forward(template):
    kernels = defined_kernels(template)  # (none in shared_kernels.h, which only declares)
    for i, (name, line) in enumerate(kernels):
        if name.endswith("_backward"):
            forward = name[: -len("_backward")] + "_forward"
            before = kernels[i - 1][0] if i > 0 else None
            assert before == forward, f"{template}:{line}: {name} should follow {forward}, follows {before}"


@pytest.mark.parametrize("source", templates() + instantiating_files())
def test_no_macro_bodies_continued_with_backslash(source):
    lines = (CSRC / source).read_text().splitlines()
    continued = [i + 1 for i, line in enumerate(lines) if line.rstrip().endswith("\\")]
    assert not continued, f"{source}: lines continued with a backslash: {continued}"


def test_vgrad_h_maps_every_file():
    header = (CSRC / "vgrad.h").read_text()
    description = header[: header.index("*/")]
    files = sorted(f.name for f in CSRC.iterdir() if f.suffix in (".c", ".h", ".def"))
    missing = [f for f in files if not re.search(rf"(?<![\w.]){re.escape(f)}(?![\w.])", description)]
    assert not missing, f"csrc/vgrad.h's map of the files does not name {missing}"


def test_no_file_makes_kernels_with_a_macro():
    """The older way (a family written as one macro DEFINE_...(T, S), instantiated by VG_INSTANTIATE) is gone
    from every file, so every kernel has line numbers and a name grep finds."""
    for f in sorted(CSRC.glob("*.[ch]")):
        text = strip_comments(f.read_text())
        assert "VG_INSTANTIATE" not in text and not re.search(r"#define\s+DEFINE_\w+\(T", text), f.name


def test_each_elementwise_op_is_one_section_with_its_functions_of_C():
    """An element-wise op (a new Tanh too) is written in one place: a section of elementwise_kernels.h holds its
    kernels and, in its VG_BOUNDARIES half, the functions of vgrad._C that call them; each such function calls a
    kernel of its own section."""
    text = strip_comments((CSRC / "elementwise_kernels.h").read_text())
    sections = re.split(r"^#ifndef VG_BOUNDARIES$", text, flags=re.M)[1:]
    assert len(sections) >= 8
    exported = set()
    for section in sections:
        kernels_half, boundaries = section.split("#else", 1)
        kernels = set(re.findall(r"^[A-Za-z_][\w ]*\bVG_T\((\w+)\)\s*\([^;{]*\)\s*\{", kernels_half, flags=re.M))
        functions = re.findall(r"^VG_BOUNDARY\((\w+)\)", boundaries, flags=re.M)
        called = set(re.findall(r"\bKERNEL\(\w+,\s*(\w+)\)", boundaries))
        assert kernels and functions and called == kernels, (kernels, functions, called)
        exported.update(functions)
    elementwise = (CSRC / "functions.def").read_text().split("/* elementwise.c */")[1].split("/*")[0]
    listed = set(re.findall(r"VG_FUNC\((\w+),", elementwise))
    assert exported == listed, (f"csrc/functions.def's elementwise.c lines and the VG_BOUNDARY functions of "
                                f"elementwise_kernels.h differ: defined but not listed {sorted(exported - listed)}, "
                                f"listed but not defined {sorted(listed - exported)}")
    assert "VG_BOUNDARY(" not in strip_comments((CSRC / "elementwise.c").read_text())
