"""
The checks of the exercise notebooks. notebooks/build.py copies this file into every notebook it builds, so a
notebook handed out on its own carries its checks with it: edit them here, then rebuild.

Every check prints one line (or a short block) that starts with PASS or FAIL and says why, and returns True
or False. A check never raises: "Run All" goes on past an exercise that is not done yet, and an answer that
crashes is reported as FAIL with the error and where it happened in your code.
"""
import inspect
import re
import sys

import numpy as np

import vgrad as vg


def _say(ok, message):
    print(('PASS: ' if ok else 'FAIL: ') + message)
    return ok


def _where(exc):
    """The function and line of your code (a notebook cell) where `exc` was raised, or (None, None)."""
    checks_file = _where.__code__.co_filename  # these checks' own frames are never the place to look
    place = (None, None)
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename != checks_file and ('ipykernel' in code.co_filename or code.co_filename.startswith('<')):
            place = (getattr(code, 'co_qualname', code.co_name), tb.tb_lineno)
        tb = tb.tb_next
    return place


def _explain(what, exc):
    """A FAIL message for an exception raised by the student's code (or by vgrad, about it)."""
    where, line = _where(exc)
    if where == '<module>':
        where = None
    if isinstance(exc, NotImplementedError):
        if where:
            return f'{where} is not written yet (it raises NotImplementedError): replace its TODO with your code'
        return f'{what} is not written yet: {exc}'
    place = f' (in {where}, line {line} of its cell)' if where else ''
    return f'{what} raised {type(exc).__name__}: {exc}{place}'


def _is_builtin(op):
    return (getattr(op, '__module__', '') or '').split('.')[0] == 'vgrad'


def _difference(got, expected):
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(got - expected))) if got.size else 0.0


def check_op(op, *arrays, forward=None, forward_text=None, **kwargs):
    """
    Check an Op of your own: its forward against `forward` (a NumPy function of the same arrays), then its
    backward against central differences with vg.gradcheck. Keyword arguments go to the op (repeats=16).
    """
    name = getattr(op, '__name__', repr(op))
    if not (isinstance(op, type) and issubclass(op, vg.Op)):
        return _say(False, f'expected a subclass of vg.Op (class My...(vg.Op)), got {type(op).__name__}')
    if _is_builtin(op):
        return _say(False, f'{name} is vgrad\'s built-in op: this exercise checks an op of your own '
                           f'(class My{name}(vg.Op): ...)')
    inputs = [np.array(a, dtype=np.float64) for a in arrays]
    try:
        out = op.forward({}, *[x.copy() for x in inputs], **kwargs)
    except Exception as e:
        return _say(False, _explain(f'{name}.forward', e))
    if forward is not None:
        expected = forward(*inputs)
        if out is None:
            return _say(False, f'{name}.forward returned None: did you forget `return`?')
        if np.shape(out) != np.shape(expected):
            return _say(False, f'{name}.forward returned shape {np.shape(out)}, but {forward_text or "the reference"} '
                               f'has shape {np.shape(expected)}')
        if not np.allclose(out, expected, rtol=1e-7, atol=1e-10):
            return _say(False, f'{name}.forward gives wrong values: they differ from '
                               f'{forward_text or "the reference"} by up to {_difference(out, expected):.3g}')
    try:
        vg.gradcheck(op, *inputs, **kwargs)
    except vg.GradcheckError as e:
        if str(e).startswith('gradcheck failed'):
            return _say(False, f'{name}.backward does not match the central differences.\n{e}')
        return _say(False, str(e))
    except Exception as e:
        return _say(False, _explain(f'{name}.backward', e))
    compared = f'matches {forward_text}' if forward_text else ('matches the reference' if forward else 'runs')
    return _say(True, f'{name}: forward {compared}, and backward matches central differences for every input '
                      f'(vg.gradcheck, float64)')


def check_close(what, compute, expected, rtol=1e-6, atol=1e-9):
    """
    Check that compute() -- your code, called here -- returns `expected` (an array or a tuple of arrays).
    compute may also be a value; None means: not answered yet.
    """
    if compute is None:
        return _say(False, f'{what}: no answer yet (it is None): write it in the TODO above')
    try:
        got = compute() if callable(compute) else compute
    except Exception as e:
        return _say(False, _explain(what, e))
    if got is None:
        return _say(False, f'{what}: no answer yet (it is None): write it in the TODO above')
    single = not isinstance(expected, (tuple, list))
    gots = [got] if single else (list(got) if isinstance(got, (tuple, list)) else [got])
    wants = [expected] if single else list(expected)
    if len(gots) != len(wants):
        return _say(False, f'{what}: expected {len(wants)} results, got {len(gots)}')
    for k, (g, w) in enumerate(zip(gots, wants)):
        label = what if single else f'{what}, result {k}'
        g = g.value if isinstance(g, vg.TensorNode) else g
        if np.shape(g) != np.shape(w):
            return _say(False, f'{label}: shape {np.shape(g)}, expected {np.shape(w)}')
        if not np.allclose(g, w, rtol=rtol, atol=atol):
            return _say(False, f'{label}: the values differ from the reference by up to {_difference(g, w):.3g}')
    return _say(True, f'{what}: matches the reference')


def check_operation(answer, node):
    """Question 6.1: the object that defines the operation of the OpNode that made `node`."""
    expected = node.source.op
    if answer is None:
        return _say(False, '1) no answer yet (it is None): write it in the TODO above')
    if answer is expected:
        return _say(True, f'1) {expected.__name__}: a subclass of vg.Op, the class itself (no instance is ever '
                          f'made); its static forward and backward are the operation')
    if answer is node.source:
        return _say(False, '1) that is the OpNode itself; the question asks what defines the operation it applies')
    if isinstance(answer, expected):
        return _say(False, f'1) that is an instance of {expected.__name__}; the graph uses something else')
    return _say(False, f'1) that is {answer!r}, which is not what defines the operation of c.source')


def _normalise(line):
    line = line.split('#')[0] if "'" not in line and '"' not in line else line
    return re.sub(r'\s+', '', line.strip())


def _same_line(answer, line):
    return _normalise(answer) == _normalise(line) and _normalise(answer) != ''


def _describe(frame_or_code, lineno):
    code = getattr(frame_or_code, 'f_code', frame_or_code)
    path = code.co_filename
    short = path[path.rfind('vgrad'):] if 'vgrad' in path else path
    return f'{short}, line {lineno}, in {getattr(code, "co_qualname", code.co_name)}'


def _line_of(code, lineno):
    try:
        lines, start = inspect.getsourcelines(code)
    except (OSError, TypeError):
        return ''
    return lines[lineno - start] if 0 <= lineno - start < len(lines) else ''


def _core_lines(function, wanted):
    """(code line, line number) of the statements of vgrad/core.py's `function` for which `wanted(node)` holds,
    read from the source: core.py runs compiled, where no tracer can see its lines, but its source is the
    code that runs (see its header)."""
    import ast
    path = vg.core.__file__
    if not path.endswith('.py'):
        path = path[:path.index('core.')] + 'core.py'
    source = open(path).read()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for sub in ast.walk(node):
                if isinstance(sub, ast.stmt) and wanted(sub):
                    found.append((lines[sub.lineno - 1], sub.lineno))
    return path, found


def _answer_missing(what, answer):
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return _say(False, f'{what}: no answer yet: copy the line of code, as a string, into the TODO above')
    if not isinstance(answer, str):
        return _say(False, f'{what}: give the line of code as a string, e.g. "x = y + z"')
    return None


def check_addition_line(answer):
    """Question 6.2: the line of vgrad's code, run by `c = a + b`, where the arrays are added."""
    missing = _answer_missing('the addition', answer)
    if missing is not None:
        return missing
    executed = []
    codes = {inspect.unwrap(vg.Add.forward).__code__, inspect.unwrap(vg.Add.Reference.forward).__code__}

    def tracer(frame, event, arg):
        if frame.f_code in codes:
            if event == 'line':
                executed.append((frame.f_code, frame.f_lineno))
            return tracer
        return None

    sys.settrace(tracer)
    try:
        a, b = vg.TensorNode(np.ones((2, 2))), vg.TensorNode(np.ones((2, 2)))
        a + b
        vg.Add.Reference.do_forward(a, b)
    finally:
        sys.settrace(None)
    for code, lineno in executed:
        if _same_line(answer, _line_of(code, lineno)):
            return _say(True, f'that is {_describe(code, lineno)}: where `c = a + b` ends up adding the arrays')
    return _say(False, 'that line is not where the two arrays are added. Follow c.source.op to its forward '
                       '(inspect.getsource shows it) and copy the line that computes the sum')


def check_connect_line(answer):
    """Question 6.3: the line in which a new OpNode gets its outputs."""
    missing = _answer_missing('connecting the outputs', answer)
    if missing is not None:
        return missing

    def connects(stmt):
        import ast
        return isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == 'outputs' for t in stmt.targets) \
            and not (isinstance(stmt.value, ast.Constant) and stmt.value.value is None)

    path, found = _core_lines('_apply', connects)
    for line, lineno in found:
        if _same_line(answer, line):
            return _say(True, f'that is vgrad/core.py, line {lineno}, in _apply (what Op.do_forward runs): the '
                              f'OpNode learns its outputs once they exist')
    return _say(False, 'that line is not where the OpNode is connected to its outputs: read Op.do_forward in '
                       'vgrad/core.py and the function it calls')


def check_backward_call_line(answer):
    """Question 7: the line where loss.backward() ends up calling an op's backward()."""
    missing = _answer_missing('calling backward', answer)
    if missing is not None:
        return missing

    def calls_backward(stmt):
        import ast
        return any(isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr == 'backward'
                   for c in ast.walk(stmt)) and not isinstance(stmt, (ast.If, ast.For, ast.While))

    path, found = _core_lines('_run_backward', calls_backward)
    for line, lineno in found:
        if _same_line(answer, line):
            return _say(True, f'that is vgrad/core.py, line {lineno}, in _run_backward: the graph traversal calls '
                              f'each op\'s backward')
    return _say(False, 'that line is not where an op\'s backward() is called: start from TensorNode.backward '
                       'in vgrad/core.py and follow the calls')


# Question 8: one input and the op's constant arguments for each op the question lets you choose.
_OP_CASES = {
    'Normalize': (lambda rng: rng.uniform(0.5, 2.0, (4, 5)), {}),
    'Expand': (lambda rng: rng.standard_normal((4, 1)), {'dim': 1, 'repeats': 3}),
    'Select': (lambda rng: rng.standard_normal((4, 5)), {'indices': np.array([0, 4, 2, 2])}),
    'Squeeze': (lambda rng: rng.standard_normal((4, 1, 3)), {'dim': 1}),
    'Unsqueeze': (lambda rng: rng.standard_normal((4, 3)), {'dim': 1}),
}


def check_backward_by_hand(op_name, my_backward):
    """Question 8: your backward, my_backward(x, go, **constants), against vgrad's op's backward."""
    if op_name not in _OP_CASES:
        return _say(False, f'choose one of {", ".join(_OP_CASES)}, not {op_name!r}')
    make_input, constants = _OP_CASES[op_name]
    op = getattr(vg, op_name)
    rng = np.random.default_rng(8)
    x = make_input(rng)
    context = {}
    out = op.forward(context, x.copy(), **constants)
    go = rng.standard_normal(np.shape(out))
    expected = op.backward(context, go.copy())
    shown = ', '.join(f'{k}={v!r}' if not isinstance(v, np.ndarray) else f'{k}={v.tolist()}'
                      for k, v in constants.items())
    return check_close(f'my_backward for {op_name}({shown or "x"}) against vg.{op_name}.backward',
                       lambda: my_backward(x.copy(), go.copy(), **constants), expected)


def check_same_network(what, mine, reference, x, targets, loss=vg.logceloss):
    """
    Questions 10-11: two networks with the same parameters must give the same outputs and gradients. `mine`
    and `reference` are modules whose parameters() have the same shapes, in the same order: the reference's
    values are copied into yours first. `loss(output, targets)` makes the scalar to backpropagate from.
    """
    loss_fn = loss
    try:
        params, ref_params = list(mine.parameters()), list(reference.parameters())
    except Exception as e:
        return _say(False, _explain(f'{type(mine).__name__}.parameters', e))
    if [p.value.shape for p in params] != [p.value.shape for p in ref_params]:
        return _say(False, f'{what}: the parameters have shapes {[p.value.shape for p in params]}, expected '
                           f'{[p.value.shape for p in ref_params]}')
    for p, r in zip(params, ref_params):
        p.value = r.value.copy()
    results = []
    for model in (mine, reference):
        try:
            out = model(vg.TensorNode(x))
            loss = loss_fn(out, targets)
            loss.backward()
        except Exception as e:
            return _say(False, _explain(f'{type(model).__name__}.forward', e))
        results.append((out.value.copy(), [np.array(p.grad) for p in model.parameters()]))
        loss.zero_grad()
        loss.clear()
    (out, grads), (ref_out, ref_grads) = results
    if out.shape != ref_out.shape:
        return _say(False, f'{what}: the output has shape {out.shape}, expected {ref_out.shape}')
    if not np.allclose(out, ref_out, rtol=1e-6, atol=1e-8):
        return _say(False, f'{what}: the outputs differ from the reference network\'s by up to '
                           f'{_difference(out, ref_out):.3g}')
    for k, (g, r) in enumerate(zip(grads, ref_grads)):
        if not np.allclose(g, r, rtol=1e-5, atol=1e-8):
            return _say(False, f'{what}: the gradient of parameter {k} differs from the reference network\'s '
                               f'by up to {_difference(g, r):.3g}')
    return _say(True, f'{what}: the same outputs and gradients as the reference network, with the same weights')
