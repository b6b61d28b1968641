"""
The fingerprints of upstream vugrad (upstream.json, written by `python -m vgrad.overlay.regenerate`), and
questions about them: is this definition, as it stands, in some upstream revision, and in which ones?

Course staff with a copy of vugrad of their own (and the tests, with a package written for them) can add
fingerprint files made by the same script: $VGRAD_OVERLAY_UPSTREAM lists them (separated like PATH). Add
only copies whose definitions keep upstream vugrad's semantics: equivalents.py replaces an upstream
definition by name.
"""
import functools
import json
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'upstream.json')
EXTRA_VARIABLE = 'VGRAD_OVERLAY_UPSTREAM'


def paths():
    """The fingerprint files in use: vgrad's own, then those listed in $VGRAD_OVERLAY_UPSTREAM."""
    extra = os.environ.get(EXTRA_VARIABLE, '')
    return [PATH] + [p for p in extra.split(os.pathsep) if p]


@functools.lru_cache(maxsize=None)
def _load():
    described, rows = {}, []
    for path in paths():
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        described.update(data['revisions'])
        rows.extend(data['definitions'])
    definitions, methods, names, method_names = {}, {}, set(), set()
    for row in rows:
        revisions = frozenset(row['revisions'])
        if row['kind'] == 'definition':
            definitions[(row['name'], row['fingerprint'])] = definitions.get((row['name'], row['fingerprint']),
                                                                             frozenset()) | revisions
            names.add(row['name'])
        else:
            key = (row['class'], row['name'], row['fingerprint'])
            methods[key] = methods.get(key, frozenset()) | revisions
            method_names.add((row['class'], row['name']))
    return described, definitions, methods, names, method_names


def revisions():
    """{revision label: 'date subject'} of every revision the fingerprints come from."""
    return _load()[0]


def revisions_of(name, fingerprint):
    """The upstream revisions that define `name` exactly so (in any of the package's files); empty if none."""
    return _load()[1].get((name, fingerprint), frozenset())


def knows(name):
    """True if some upstream revision defines `name` at the top level of a file."""
    return name in _load()[3]


def method_revisions(cls, method, fingerprint):
    return _load()[2].get((cls, method, fingerprint), frozenset())


def has_method(cls, method, fingerprint):
    return bool(method_revisions(cls, method, fingerprint))


def knows_method(cls, method):
    return (cls, method) in _load()[4]


def in_order(labels):
    """Revision labels sorted by date (labels that are not commits, such as extra files, last)."""
    described = revisions()
    return sorted(labels, key=lambda label: (described.get(label, '9999'), label))
