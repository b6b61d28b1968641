"""
Regenerates upstream.json, the fingerprints of every definition in upstream vugrad, from a git work tree of
github.com/dlvu/vugrad (all revisions reachable from any ref), plus any extra files of the course that live
outside that repository:

    python -m vgrad.overlay.regenerate /path/to/vugrad [--extra LABEL=MODULE=FILE ...] [--out FILE]

e.g. `--extra course-copy-2023=functions=/tmp/data.py` for the newer course copy of the loaders (with
`load_mnist(..., shuffle_seed=0)`). A folder that is not a git work tree is read as one revision, named by
`--label`: course staff can fingerprint their own copy this way and list the file in
$VGRAD_OVERLAY_UPSTREAM. Only fingerprints, names and revision labels are written: no vugrad source goes
into this project.
"""
import argparse
import ast
import json
import os
import subprocess
import sys

from .fingerprint import binding_names, fingerprint

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'upstream.json')
PACKAGE = 'vugrad/'


def _git(tree, *args):
    return subprocess.run(['git', '-C', tree, *args], check=True, capture_output=True, text=True).stdout


def definitions(source, module):
    """(kind, module, class or None, name, fingerprint) for every top-level definition of one file, and for
    every method of its classes."""
    found = []
    for stmt in ast.parse(source).body:
        for name, node in binding_names(stmt).items():
            if node is None:
                continue
            found.append(('definition', module, None, name, fingerprint(node)))
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    for method, sub in binding_names(member).items():
                        if sub is not None:
                            found.append(('method', module, name, method, fingerprint(sub)))
    return found


def _package_files(folder):
    """(module name, path) of the vugrad package's files in a folder (the package itself, or its parent)."""
    root = folder if os.path.isfile(os.path.join(folder, '__init__.py')) else os.path.join(folder, 'vugrad')
    for base, _, files in os.walk(root):
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(base, name)
                yield os.path.relpath(path, root)[:-3].replace(os.sep, '.'), path


def collect(tree, extras=(), label=None):
    """{(kind, module, class, name, fingerprint): set of revision labels}, and the revisions' descriptions."""
    table, revisions = {}, {}
    is_git = subprocess.run(['git', '-C', tree, 'rev-parse', '--git-dir'], capture_output=True).returncode == 0
    if not is_git:
        label = label or os.path.basename(os.path.abspath(tree))
        revisions[label] = f'the copy in {os.path.basename(os.path.abspath(tree))}'
        for module, path in _package_files(tree):
            with open(path, encoding='utf-8') as f:
                for key in definitions(f.read(), '' if module == '__init__' else module):
                    table.setdefault(key, set()).add(label)
    for commit in (_git(tree, 'rev-list', '--all').split() if is_git else []):
        label = commit[:7]
        revisions[label] = _git(tree, 'log', '-1', '--date=short', '--format=%ad %s', commit).strip()
        for path in _git(tree, 'ls-tree', '-r', '--name-only', commit).splitlines():
            if not (path.startswith(PACKAGE) and path.endswith('.py')):
                continue
            module = path[len(PACKAGE):-3].replace('/', '.')
            module = '' if module == '__init__' else module
            try:
                found = definitions(_git(tree, 'show', f'{commit}:{path}'), module)
            except SyntaxError:
                continue  # a revision that never ran
            for key in found:
                table.setdefault(key, set()).add(label)
    for label, module, path in extras:
        revisions[label] = 'extra files of the course, outside the repository'
        with open(path, encoding='utf-8') as f:
            for key in definitions(f.read(), module):
                table.setdefault(key, set()).add(label)
    return table, revisions


def to_json(table, revisions):
    rows = [{'kind': kind, 'module': module, 'class': cls, 'name': name, 'fingerprint': fp,
             'revisions': sorted(labels)}
            for (kind, module, cls, name, fp), labels in table.items()]
    rows.sort(key=lambda r: (r['kind'], r['module'], r['class'] or '', r['name'], r['fingerprint']))
    return {'about': 'fingerprints of upstream vugrad definitions; made by python -m vgrad.overlay.regenerate',
            'revisions': dict(sorted(revisions.items())), 'definitions': rows}


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m vgrad.overlay.regenerate', description=__doc__.split('\n\n')[0])
    parser.add_argument('tree', help='a git work tree (or clone) of dlvu/vugrad, or a folder with a vugrad copy')
    parser.add_argument('--label', help='the revision label of a folder that is not a git work tree')
    parser.add_argument('--extra', action='append', default=[], metavar='LABEL=MODULE=FILE',
                        help='an extra upstream file: its revision label, its module name in vugrad, its path')
    parser.add_argument('--out', default=DEFAULT_OUT, help='where to write (default: %(default)s)')
    args = parser.parse_args(argv)
    extras = []
    for spec in args.extra:
        parts = spec.split('=', 2)
        if len(parts) != 3:
            parser.error(f'--extra {spec!r}: expected LABEL=MODULE=FILE')
        extras.append(tuple(parts))
    table, revisions = collect(args.tree, extras, args.label)
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(to_json(table, revisions), f, indent=1, sort_keys=False)
        f.write('\n')
    print(f'{args.out}: {len(table)} fingerprints from {len(revisions)} revisions', file=sys.stderr)


if __name__ == '__main__':
    main()
