"""
Builds the two editions of the exercise notebooks from their one source, notebooks/source/*.ipynb:

    python notebooks/build.py            # write notebooks/student/ and notebooks/solutions/
    python notebooks/build.py --check    # exit 1, saying which, if notebooks/student/ is not what the sources give

The source notebooks hold the answers between nbgrader's markers, so they read like nbgrader sources:

  code cell                                      student edition
    def backward(context, go):                     def backward(context, go):
        ### BEGIN SOLUTION return the gradients         # TODO: return the gradients
        x, y = context['x'], context['y']              raise NotImplementedError()
        return go / y, -go * x / y ** 2
        ### END SOLUTION

  A region at the top level of a cell becomes the comment alone (`# TODO: ...`), so that the cell still runs:
  give the names it defines an empty default (`answer = None`) above the region. Text after BEGIN SOLUTION is
  the hint the TODO shows.

  markdown cell: a region between lines that say BEGIN SOLUTION and END SOLUTION, usually written as HTML
  comments (<!-- BEGIN SOLUTION -->) so that they don't show, becomes "*TODO: your answer here.*".

The solutions edition is the source without the marker lines. In both editions, a code cell tagged
`checks-helper` (in the sources: `%run ../checks.py`) becomes the text of notebooks/checks.py, so that each
notebook carries its checks when handed out on its own. Outputs are never written.

notebooks/student/ is committed (it is the file to hand out, and its diff shows in review exactly what students
get); the tests fail when it is stale. notebooks/solutions/ is not committed: it is the sources with the marker
lines dropped, so build it when you need it.

Only the standard library is used, so staff can run this anywhere.
"""
import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE_DIR = HERE / 'source'
EDITION_DIRS = {'student': HERE / 'student', 'solutions': HERE / 'solutions'}
CHECKS_FILE = HERE / 'checks.py'
CHECKS_TAG = 'checks-helper'
BEGIN, END = 'BEGIN SOLUTION', 'END SOLUTION'
CODE_HINT = 'write your code here'
TEXT_STUB = '*TODO: {hint}*'
TEXT_HINT = 'your answer here.'


class MarkerError(ValueError):
    """A solution region that does not open and close properly."""


def _source_text(cell):
    source = cell.get('source', '')
    return ''.join(source) if isinstance(source, list) else source


def _hint(line, default):
    """The text after BEGIN SOLUTION on a marker line (without comment or HTML-comment syntax), or default."""
    text = line.split(BEGIN, 1)[1]
    text = re.sub(r'-->\s*$', '', text).strip(' :-#')
    return text or default


def split_regions(text, where):
    """
    The cell text as a list of ('text', lines) and ('solution', marker_line, lines) parts. Raises MarkerError
    for a nested, unclosed or unopened region.
    """
    parts, current, region, marker = [], [], None, None
    for n, line in enumerate(text.split('\n'), 1):
        if BEGIN in line:
            if region is not None:
                raise MarkerError(f'{where}, line {n}: {BEGIN} inside another solution region')
            parts.append(('text', current))
            current, region, marker = [], [], line
        elif END in line:
            if region is None:
                raise MarkerError(f'{where}, line {n}: {END} without a {BEGIN} before it')
            parts.append(('solution', marker, region))
            region, marker = None, None
        elif region is not None:
            region.append(line)
        else:
            current.append(line)
    if region is not None:
        raise MarkerError(f'{where}: {BEGIN} without an {END}')
    parts.append(('text', current))
    return parts


def render(cell, edition, where):
    """The cell's text in an edition: 'student' (answers replaced by TODOs) or 'solutions' (markers dropped)."""
    lines = []
    for part in split_regions(_source_text(cell), where):
        if part[0] == 'text':
            lines += part[1]
        elif edition == 'solutions':
            lines += part[2]
        else:
            marker = part[1]
            indent = re.match(r'\s*', marker).group(0)
            if cell['cell_type'] == 'code':
                lines.append(f'{indent}# TODO: {_hint(marker, CODE_HINT)}')
                if indent:  # inside a function: calling it says it is not written yet
                    lines.append(f'{indent}raise NotImplementedError()')
            else:
                lines.append(indent + TEXT_STUB.format(hint=_hint(marker, TEXT_HINT)))
    return '\n'.join(lines)


def _as_lines(text):
    """Jupyter's on-disk form of a cell's source: a list of lines, each but the last ending in a newline."""
    return text.splitlines(keepends=True)


def build_notebook(source_path, edition, checks_text):
    """The notebook (a dict) of one edition built from one source notebook."""
    nb = json.loads(Path(source_path).read_text(encoding='utf-8'))
    for k, cell in enumerate(nb['cells']):
        where = f'{Path(source_path).name}, cell {k}'
        if CHECKS_TAG in cell.get('metadata', {}).get('tags', []):
            text = ('# The checks of these exercises, copied from notebooks/checks.py by notebooks/build.py.\n'
                    + checks_text.rstrip('\n'))
            cell['metadata']['jupyter'] = {'source_hidden': True}  # JupyterLab shows it folded
        else:
            text = render(cell, edition, where)
        cell['source'] = _as_lines(text)
        if cell['cell_type'] == 'code':
            cell['outputs'] = []
            cell['execution_count'] = None
    nb.setdefault('metadata', {})['vgrad'] = {
        'edition': edition,
        'built_from': f'notebooks/source/{Path(source_path).name} by notebooks/build.py; edit that, not this',
    }
    return nb


def dumps(nb):
    """Jupyter's own formatting (nbformat writes the same), so that opening and saving changes nothing."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + '\n'


def sources():
    return sorted(SOURCE_DIR.glob('*.ipynb'))


def build(edition, source_paths=None):
    """{file name: notebook text} of one edition."""
    checks_text = CHECKS_FILE.read_text(encoding='utf-8')
    return {p.name: dumps(build_notebook(p, edition, checks_text)) for p in (source_paths or sources())}


def stale(edition='student'):
    """The problems that make the committed edition differ from a fresh build, as sentences; [] if none."""
    folder = EDITION_DIRS[edition]
    fresh = build(edition)
    problems = []
    for name, text in fresh.items():
        path = folder / name
        if not path.exists():
            problems.append(f'{path} is missing')
        elif path.read_text(encoding='utf-8') != text:
            problems.append(f'{path} is not what notebooks/source/{name} gives')
    for path in sorted(folder.glob('*.ipynb')):
        if path.name not in fresh:
            problems.append(f'{path} has no source notebook in notebooks/source/')
    return problems


def write(edition, out_dir=None):
    folder = Path(out_dir) if out_dir else EDITION_DIRS[edition]
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in build(edition).items():
        (folder / name).write_text(text, encoding='utf-8')
        written.append(folder / name)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='only check that notebooks/student/ is up to date with the sources (exit 1 if not)')
    parser.add_argument('--edition', choices=sorted(EDITION_DIRS), action='append',
                        help='build only this edition (may be given twice; default: both)')
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale('student')
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                print('run: python notebooks/build.py', file=sys.stderr)
                return 1
            print('notebooks/student/ is up to date')
            return 0
        for edition in args.edition or ('student', 'solutions'):
            for path in write(edition):
                print(f'wrote {path.relative_to(HERE.parent)}')
    except MarkerError as e:
        print(f'build.py: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
