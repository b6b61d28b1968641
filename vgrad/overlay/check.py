"""
`python -m vgrad.as_vugrad --check script.py`: the script runs unchanged, and the first time each op written
by the student runs backward, its gradient is compared with central differences on that call's own inputs.

An op is the student's when its class is defined outside vgrad and defines forward or backward itself
(their ReLU, their Div, a subclass of a built-in op with a forward of their own). Its forward and backward
are wrapped when the class is created (through Op.__init_subclass__): forward remembers its last few inputs;
the first backward whose inputs are remembered runs the check, then the script carries on with the
student's own result, whatever the check found.

The check, in float64 on copies of the inputs: the output is projected on a random direction r (a scalar
L = sum(r * y)), the student's backward gives dL/dx for go = r, and central differences give it for up to
`SAMPLES` elements of each float input. An element disagrees when the two differ by more than RTOL relative
(or ATOL absolute, for tiny derivatives), at two step sizes (a disagreement at one step size only is a kink
crossed, not a wrong backward). The check saves and restores np.random's state and silences the op's
prints, so the script's own output and numbers are what they would be without --check.

One table per op with a disagreement is printed on stderr, with the op's file and line; at exit, one line
says which ops were checked and which never ran backward.
"""
import atexit
import collections
import contextlib
import inspect
import io
import os
import sys
import zlib

import numpy as np

SAMPLES = 16       # elements per input whose derivative is checked
RTOL = 1e-4
ATOL = 1e-7
REMEMBERED = 8     # forward calls remembered per op until its first backward

_VGRAD_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Checker:
    def __init__(self, stream=None):
        self.stream = stream
        self.ops = {}                 # class -> state dict
        self.order = []

    # -- wrapping -----------------------------------------------------------------------------------------

    def adopt(self, cls):
        """Wrap the forward and backward of a student's op class."""
        if not _is_students(cls) or cls in self.ops:
            return
        raw_forward = getattr(cls, 'forward', None)   # as the graph calls them: functions, or bound
        raw_backward = getattr(cls, 'backward', None)  # methods for classmethods
        if not callable(raw_forward) or not callable(raw_backward):
            return
        state = {'calls': collections.OrderedDict(), 'checked': False, 'failed': False,
                 'forward': raw_forward, 'backward': raw_backward, 'where': _where(raw_backward)}
        self.ops[cls] = state
        self.order.append(cls)

        def checked_forward(context, *inputs, **kwargs):
            result = raw_forward(context, *inputs, **kwargs)
            if not state['checked'] and isinstance(context, dict):
                calls = state['calls']
                calls[id(context)] = (context, inputs, kwargs)
                while len(calls) > REMEMBERED:
                    calls.popitem(last=False)
            return result

        def checked_backward(context, *goutputs):
            result = raw_backward(context, *goutputs)
            if not state['checked']:
                call = state['calls'].pop(id(context), None)
                if call is not None and call[0] is context:
                    state['checked'] = True
                    state['calls'].clear()
                    self._check(cls, state, call[1], call[2])
            return result

        for name, original, wrapper in (('forward', raw_forward, checked_forward),
                                        ('backward', raw_backward, checked_backward)):
            wrapper.__name__, wrapper.__qualname__ = name, f'{cls.__qualname__}.{name}'
            wrapper.__wrapped__ = original
            setattr(cls, name, staticmethod(wrapper))

    # -- the check ----------------------------------------------------------------------------------------

    def _check(self, cls, state, inputs, kwargs):
        try:
            with _quiet_and_repeatable():
                rows = _compare(cls.__name__, state['forward'], state['backward'], inputs, kwargs)
        except Exception as e:  # their op may not accept float64 copies, or fail in ways the script never sees
            state['error'] = f'{type(e).__name__}: {e}'
            return
        if rows:
            state['failed'] = True
            self._print(_table(cls.__name__, state['where'], rows))

    def _print(self, text):
        print(text, file=self.stream or sys.stderr, flush=True)

    def summary(self):
        checked = [c.__name__ for c in self.order if self.ops[c]['checked'] and 'error' not in self.ops[c]]
        failed = [c.__name__ for c in self.order if self.ops[c]['failed']]
        skipped = [c.__name__ for c in self.order if not self.ops[c]['checked']]
        errors = [f"{c.__name__} ({self.ops[c]['error']})" for c in self.order if 'error' in self.ops[c]]
        if not self.order:
            return 'vgrad --check: no op of yours ran'
        parts = []
        if checked:
            good = [n for n in checked if n not in failed]
            if good:
                parts.append(f'backward matches central differences for {", ".join(good)}')
            if failed:
                parts.append(f'differs for {", ".join(failed)} (tables above)')
        if skipped:
            parts.append(f'not checked (never ran backward): {", ".join(skipped)}')
        if errors:
            parts.append(f'could not check: {"; ".join(errors)}')
        return 'vgrad --check: ' + '; '.join(parts)


def _is_students(cls):
    module = sys.modules.get(cls.__module__)
    path = getattr(module, '__file__', None) or ''
    if os.path.realpath(path).startswith(_VGRAD_DIR + os.sep):
        return False  # vgrad's own ops (and upstream definitions replaced by them)
    return 'forward' in cls.__dict__ or 'backward' in cls.__dict__


def _where(function):
    function = getattr(inspect.unwrap(function), '__func__', function)
    try:
        path = inspect.getsourcefile(function) or function.__code__.co_filename
        line = function.__code__.co_firstlineno
        try:  # the `def` line, below any decorators (@staticmethod)
            lines, start = inspect.getsourcelines(function)
            line = start + next(i for i, text in enumerate(lines) if text.lstrip().startswith(('def ', 'async def ')))
        except (OSError, TypeError, StopIteration):
            pass
        return f'{os.path.relpath(path)}:{line}'
    except (TypeError, AttributeError, ValueError):
        return '?'


@contextlib.contextmanager
def _quiet_and_repeatable():
    """The op's prints go nowhere and np.random's state is as before: the script cannot tell."""
    state = np.random.get_state()
    stdout = sys.stdout
    sys.stdout = io.StringIO()
    try:
        with np.errstate(all='ignore'):
            yield
    finally:
        sys.stdout = stdout
        np.random.set_state(state)


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def _compare(name, forward, backward, inputs, kwargs):
    """Rows (input, index, yours, numeric) for the sampled elements that disagree, worst first."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    xs = [np.array(x, dtype=np.float64) if _is_float(x) else x for x in inputs]
    outputs = _as_tuple(forward({}, *xs, **kwargs))
    directions = [rng.standard_normal(np.shape(y)) for y in outputs]

    def loss(values):
        ys = _as_tuple(forward({}, *values, **kwargs))
        return sum(float(np.sum(r * np.asarray(y, dtype=np.float64))) for r, y in zip(directions, ys))

    context = {}
    forward(context, *[x.copy() if isinstance(x, np.ndarray) else x for x in xs], **kwargs)
    grads = _as_tuple(backward(context, *directions))
    rows = []
    for i, x in enumerate(xs):
        if not _is_float(x) or np.size(x) == 0:
            continue
        yours = grads[i] if i < len(grads) else None
        picks = rng.choice(x.size, size=min(SAMPLES, x.size), replace=False)
        for flat in picks:
            index = np.unravel_index(flat, x.shape)
            mine = None if yours is None else float(np.asarray(yours, dtype=np.float64).reshape(x.shape)[index])
            numeric = _derivative(loss, xs, i, index)
            if _agrees(mine, numeric):
                continue
            if _agrees(mine, _derivative(loss, xs, i, index, scale=0.1)):
                continue  # a kink between the two step sizes, not a wrong backward
            rows.append((i, tuple(int(k) for k in index), mine, numeric))
    rows.sort(key=lambda r: -abs((r[2] or 0.0) - r[3]))
    return rows


def _is_float(x):
    return isinstance(x, np.ndarray) and x.dtype.kind == 'f' or isinstance(x, float)


def _derivative(loss, xs, i, index, scale=1.0):
    x = xs[i]
    h = 1e-6 * scale * max(1.0, abs(float(x[index])))
    values = list(xs)
    plus, minus = x.copy(), x.copy()
    plus[index] += h
    minus[index] -= h
    values[i] = plus
    up = loss(values)
    values[i] = minus
    down = loss(values)
    return (up - down) / (2 * h)


def _agrees(mine, numeric):
    if mine is None or not np.isfinite(mine):
        return mine is not None and not np.isfinite(numeric) and mine == numeric
    return abs(mine - numeric) <= ATOL + RTOL * max(abs(numeric), abs(mine))


def _table(name, where, rows, limit=8):
    lines = [f'vgrad --check: {name}.backward ({where}) disagrees with central differences '
             f'on {len(rows)} of the elements checked; the worst:',
             f'    {"input":>5}  {"element":<16} {"yours":>14} {"numeric":>14}']
    for i, index, mine, numeric in rows[:limit]:
        shown = 'None' if mine is None else f'{mine:.6g}'
        lines.append(f'    {i:>5}  {str(index):<16} {shown:>14} {numeric:>14.6g}')
    return '\n'.join(lines)


_checker = None


def install(stream=None):
    """Check every op class created from now on (their ops are defined when their package is imported)."""
    global _checker
    if _checker is not None:
        return _checker
    from ..core import Op
    _checker = checker = Checker(stream)

    def __init_subclass__(cls, **kwargs):
        checker.adopt(cls)

    Op.__init_subclass__ = classmethod(__init_subclass__)
    atexit.register(lambda: checker._print(checker.summary()))
    return checker
