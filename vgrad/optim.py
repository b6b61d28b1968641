"""
Optimizers: SGD (momentum, dampening, Nesterov, weight decay) and Adam (weight decay, AMSGrad), with
torch.optim's semantics and its update rules written out step by step in the same order, so that the same
parameters and gradients give the same numbers as torch.optim in float64, to the last bit or so (PyTorch's
vectorised CPU kernels fuse some multiply-adds, rounding once where NumPy rounds twice).

    opt = vg.Adam(model.parameters(), lr=1e-3)
    for x, y in batches:
        loss = vg.cross_entropy(model(vg.TensorNode(x)), y)
        loss.backward()
        opt.step()        # update each parameter's value in place from its gradient
        opt.zero_grad()   # drop the gradients before the next backward()
        loss.clear()

They update `param.value` in place, so the next forward pass sees the new values.

As in torch.optim:
- Parameter groups: instead of the parameters, pass a list of dicts, each with its own 'params' and any
  hyperparameters that differ from the constructor's, e.g.
      vg.SGD([{'params': model.body.parameters()}, {'params': model.head.parameters(), 'lr': 0.1}], lr=0.01)
  They are in `opt.param_groups` (change `opt.param_groups[i]['lr']` to schedule the learning rate), and
  `opt.add_param_group({...})` adds one. With a single group, `opt.lr` (and `opt.momentum`, ...) reads and
  sets it too.
- State per parameter, in `opt.state[param]`: SGD's 'momentum_buffer'; Adam's 'step', 'exp_avg',
  'exp_avg_sq' (and 'max_exp_avg_sq' with amsgrad). Adam counts steps per parameter, so a parameter that
  first gets a gradient at the 5th step gets the bias correction of its own first step.
- A parameter without a gradient is skipped: step() neither moves it (no momentum, no weight decay) nor
  touches its state. See "Which parameters have a gradient" below.
- `zero_grad(set_to_none=True)` drops the gradients (the default, as in torch); `set_to_none=False` fills
  the existing ones with zeros, so that those parameters are still moved by momentum and weight decay.
- `state_dict()` and `load_state_dict()`: {'state': {index: {...}}, 'param_groups': [{hyperparameters...,
  'params': [indices]}]}, with parameters numbered in the order the groups list them. It holds only NumPy
  arrays and plain Python values, so pickle saves it (as does np.savez(file, optimizer=state), in a pickled
  object array: np.load(file, allow_pickle=True)['optimizer'].item()). An optimizer that loads it, over the
  same parameters with the same values, continues exactly as the saved one would have, bit for bit.
- `step(closure)` calls closure() first and returns its result.
- Invalid input raises at once: TypeError for something that is not an iterable of parameters (a module: pass
  model.parameters()), ValueError for an empty parameter list, a non-leaf node, a parameter in two groups, and
  invalid hyperparameters, with torch's wording ('Invalid learning rate: -1').

Where vgrad is stricter than torch 2.13, on purpose:
- The same parameter twice in a group is a ValueError. torch warns ("in future, this will cause an error")
  and then updates that parameter twice per step, from one gradient.
- A learning rate of NaN or infinity is refused (torch accepts lr=nan for SGD, and lr=inf for both); so
  are NaN and infinite momentum, dampening, weight decay and eps: they can only turn the parameters into NaN.
- A set of parameters is refused (its order changes from run to run, and so would the state_dict's
  numbering); torch refuses it only inside a parameter group.
- Parameters must hold floating-point values (they are updated in place).
- state_dict() returns copies, so a saved state dict is a snapshot (torch's refers to the live buffers);
  load_state_dict() checks the saved state (shapes, keys) before changing anything.
- SGD keeps vgrad's positional order (params, lr, momentum, weight_decay), and dampening and nesterov are
  keyword-only. torch's is (params, lr, momentum, dampening, weight_decay, nesterov): a fourth positional
  argument is weight_decay here but dampening there (more than four are refused), so pass them by name.

Which parameters have a gradient: a parameter (a TensorNode) has no gradient when its gradient array,
`param._grad`, is None. That is the case when it was just created, or its gradient was dropped (by
opt.zero_grad(), or by loss.zero_grad() on a loss computed from it), and since then backward() has not
reached it (it was not used, or only through ops or nodes with requires_grad=False) and nothing has read or
written `param.grad`. Reading `param.grad` always gives an array (zeros when there is no gradient yet, as in
vugrad), and that array then is the parameter's gradient, a zero one: momentum and weight decay move the
parameter from then on, as torch does after zero_grad(set_to_none=False).
"""
import copy
import math

import numpy as np

from . import memory
from .core import Module, TensorNode, grad_dtype


class Optimizer:
    """
    Holds the parameter groups (lists of TensorNodes with their hyperparameters) and whatever state the update
    rule keeps for each parameter. Subclasses define _update(group) and check their hyperparameters in
    _checked_group(); `defaults` are the hyperparameters a group takes unless it says otherwise.
    """

    # The keys a subclass keeps in a parameter's state, for load_state_dict() to check; 'step' is a count,
    # the others are arrays of the parameter's shape. None accepts any state as it is.
    _state_keys = None

    def __init__(self, params, defaults):
        name = type(self).__name__
        if not isinstance(defaults, dict):  # vgrad's first Optimizer took (params, lr)
            defaults = {'lr': defaults}
        self.defaults = self._checked_group(dict(defaults), name)
        self.state = {}         # parameter (TensorNode) -> dict of its state
        self.param_groups = []  # dicts: 'params' (a list of TensorNodes) and the hyperparameters
        items = _as_list(params, name)
        if not items:
            raise ValueError(f'{name}: optimizer got an empty parameter list (did model.parameters() find no '
                             f'parameters, or was the generator used up?)')
        if isinstance(items[0], dict):
            for group in items:
                self._add_group(group, f'{name}, parameter group {len(self.param_groups)}')
        else:
            self._add_group({'params': items}, name)

    def add_param_group(self, param_group):
        """Add a group: a dict with 'params' (TensorNodes) and the hyperparameters that differ from the defaults."""
        self._add_group(param_group, f'{type(self).__name__}, parameter group {len(self.param_groups)}')

    def _add_group(self, param_group, where):
        if not isinstance(param_group, dict):
            raise TypeError(f'{where}: a parameter group must be a dict with the key "params", got a '
                            f'{type(param_group).__name__}; give either TensorNodes or parameter groups, not both')
        if 'params' not in param_group:
            raise ValueError(f'{where}: a parameter group needs the key "params" (a list of TensorNodes)')
        params = param_group['params']
        params = [params] if isinstance(params, TensorNode) else _as_list(params, where)  # as torch allows
        seen = {}
        for i, p in enumerate(params):
            _check_parameter(p, i, where)
            if p in seen:
                raise ValueError(f'{where}: parameter {i} is the same TensorNode as parameter {seen[p]}; list each '
                                 f'parameter once (torch 2.13 warns about this, then updates it twice per step)')
            seen[p] = i
        for group in self.param_groups:
            if any(p in seen for p in group['params']):
                raise ValueError(f'{where}: some parameters appear in more than one parameter group')
        settings = {key: value for key, value in param_group.items() if key != 'params'}
        group = {'params': params, **self._checked_group({**self.defaults, **settings}, where)}
        self.param_groups.append(group)

    def _checked_group(self, group, where):
        """The group's hyperparameters checked (ValueError with torch's wording) and made plain floats; other
        keys (your own, say a 'name') are kept as they are."""
        if 'lr' in group:
            group['lr'] = _hyperparameter(group['lr'], where, 'learning rate')
        return group

    @property
    def params(self):
        """All parameters, group after group."""
        return [p for group in self.param_groups for p in group['params']]

    def zero_grad(self, set_to_none=True):
        """
        Drop every parameter's gradient (set_to_none=True, the default, as in torch): until backward() reaches
        it again, a parameter has no gradient and step() leaves it alone. With set_to_none=False, the
        gradients that exist are filled with zeros instead (and the parameters without one stay without).
        """
        for group in self.param_groups:
            for p in group['params']:
                if set_to_none:
                    p.grad = None
                elif p._grad is not None:
                    p._grad.fill(0)

    def step(self, closure=None):
        """Update every parameter that has a gradient (see the module's docstring), group by group. If given,
        closure() (which recomputes the loss) is called first, and its result returned."""
        loss = closure() if closure is not None else None
        with memory.cached():  # the update's temporaries reuse last step's blocks (vgrad/memory.py)
            for group in self.param_groups:
                self._update(group)
        return loss

    def _update(self, group):
        raise NotImplementedError(f'{type(self).__name__} must define step() or _update(group)')

    def _gradient(self, p):
        """The parameter's gradient, or None if it has none (see the module's docstring)."""
        grad = p._grad
        if grad is not None and np.shape(grad) != p.value.shape:
            raise ValueError(f'{type(self).__name__}: a parameter of shape {p.value.shape} has a gradient of shape '
                             f'{np.shape(grad)}; they must be equal')
        return grad

    def state_dict(self):
        """
        The optimizer's state as plain data: {'state': {index: {name: array or step count}}, 'param_groups':
        [{hyperparameters..., 'params': [indices]}]}, numbering the parameters in the order of the groups.
        Parameters that have never been updated have no entry in 'state'. The arrays are copies.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {key: copy.deepcopy(value) for key, value in group.items() if key != 'params'}
            packed['params'] = [index.setdefault(p, len(index)) for p in group['params']]
            groups.append(packed)
        state = {index[p]: copy.deepcopy(s) for p, s in self.state.items() if s and p in index}
        return {'state': dict(sorted(state.items())), 'param_groups': groups}

    def load_state_dict(self, state_dict):
        """
        Take the hyperparameters and the state from a state_dict() of an optimizer of the same kind over
        parameters of the same shapes, in the same groups and order. Everything is checked before anything
        changes; the arrays are copied.
        """
        where = f'{type(self).__name__}.load_state_dict'
        try:
            saved_groups, saved_state = state_dict['param_groups'], state_dict['state']
        except (TypeError, KeyError, IndexError):
            raise ValueError(f"{where}: expected a dict with 'state' and 'param_groups', as state_dict() returns, "
                             f"got a {type(state_dict).__name__}") from None
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f'{where}: loaded state dict has a different number of parameter groups '
                             f'({len(saved_groups)}, this optimizer has {len(self.param_groups)})')
        groups, parameter_of = [], {}
        for k, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, dict) or 'params' not in saved:
                raise ValueError(f"{where}: parameter group {k} must be a dict with 'params', as state_dict() "
                                 f"gives, got {saved!r:.80}")
            if len(saved['params']) != len(group['params']):
                raise ValueError(f"{where}: loaded state dict contains a parameter group that doesn't match the size "
                                 f"of optimizer's group (group {k} has {len(saved['params'])} parameters there, "
                                 f"{len(group['params'])} here)")
            missing = [key for key in self.defaults if key not in saved]
            if missing:
                raise ValueError(f'{where}: parameter group {k} lacks {", ".join(missing)}: was the state dict saved '
                                 f'by another kind of optimizer?')
            settings = {key: copy.deepcopy(value) for key, value in saved.items() if key != 'params'}
            groups.append({'params': group['params'], **self._checked_group(settings, f'{where}, parameter group {k}')})
            for index, p in zip(saved['params'], group['params']):
                if index in parameter_of:
                    raise ValueError(f'{where}: parameter index {index!r} appears more than once in the loaded '
                                     f'param_groups')
                parameter_of[index] = p
        state = {}
        for index, saved in saved_state.items():
            if index not in parameter_of:
                raise ValueError(f"{where}: the loaded state has an entry for parameter {index!r}, which no "
                                 f"parameter group lists")
            p = parameter_of[index]
            loaded = self._loaded_state(saved, p, f'{where}, parameter {index!r}')
            if loaded:
                state[p] = loaded
        self.param_groups[:] = groups
        self.state = state

    def _loaded_state(self, saved, p, where):
        """One parameter's saved state, checked and copied (arrays in the parameter's shape and dtype)."""
        if self._state_keys is None:
            return copy.deepcopy(saved)
        if not isinstance(saved, dict):
            raise ValueError(f'{where}: the state must be a dict, got a {type(saved).__name__}')
        unknown = sorted(map(str, set(saved) - set(self._state_keys)))
        if unknown:
            raise ValueError(f'{where}: unknown state {", ".join(unknown)} ({type(self).__name__} keeps '
                             f'{", ".join(self._state_keys)}): was it saved by another kind of optimizer?')
        state = {}
        for key, value in saved.items():
            if value is None:  # torch once saved a momentum_buffer of None for parameters never updated
                continue
            if key == 'step':
                count = float(np.asarray(value))
                if not (count >= 0 and count == int(count)):
                    raise ValueError(f"{where}: 'step' must be a count of steps, got {value!r}")
                state[key] = int(count)
            else:
                array = np.array(value, dtype=grad_dtype(p.value))  # a copy
                if array.shape != p.value.shape:
                    raise ValueError(f"{where}: '{key}' has shape {array.shape}, but the parameter has shape "
                                     f"{p.value.shape}")
                state[key] = array
        return state

    def __repr__(self):
        groups = []
        for group in self.param_groups:
            settings = ', '.join(f'{key}={value!r}' for key, value in group.items() if key != 'params')
            n = len(group['params'])
            groups.append(f'{{{n} parameter{"s" if n != 1 else ""}, {settings}}}')
        return f'{type(self).__name__}({", ".join(groups)})'


def _setting(name):
    """A property that reads and sets a hyperparameter of every group: vgrad's first API (`opt.lr = 0.01`)."""

    def get(self):
        values = [group[name] for group in self.param_groups]
        if any(value != values[0] for value in values):
            raise AttributeError(f'{type(self).__name__}.{name}: the parameter groups have different values '
                                 f'({values}); read them in opt.param_groups')
        return values[0]

    def set(self, value):
        checked = [self._checked_group({**group, name: value}, type(self).__name__) for group in self.param_groups]
        for group, new in zip(self.param_groups, checked):
            group[name] = new[name]

    return property(get, set, doc=f"The {name} of every parameter group (opt.param_groups[i]['{name}']).")


Optimizer.lr = _setting('lr')


class SGD(Optimizer):
    """
    Stochastic gradient descent, as torch.optim.SGD. For each parameter p with gradient g:
        g = g + weight_decay * p                                  (if weight_decay)
        if momentum:
            buf = g                                               (its first update)
            buf = momentum * buf + (1 - dampening) * g            (later updates)
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    """

    _state_keys = ('momentum_buffer',)

    def __init__(self, params, lr=1e-3, momentum=0.0, weight_decay=0.0, *, dampening=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov))

    momentum, dampening, weight_decay, nesterov = (_setting(name) for name in
                                                   ('momentum', 'dampening', 'weight_decay', 'nesterov'))

    def _checked_group(self, group, where):
        group = super()._checked_group(group, where)
        group['momentum'] = _hyperparameter(group['momentum'], where, 'momentum value')
        group['dampening'] = _hyperparameter(group['dampening'], where, 'dampening value', low=-math.inf)
        group['weight_decay'] = _hyperparameter(group['weight_decay'], where, 'weight_decay value')
        group['nesterov'] = bool(group['nesterov'])
        if group['nesterov'] and (group['momentum'] <= 0 or group['dampening'] != 0):
            raise ValueError(f'{where}: Nesterov momentum requires a momentum and zero dampening')
        return group

    def _update(self, group):
        lr, momentum, dampening = group['lr'], group['momentum'], group['dampening']
        weight_decay, nesterov = group['weight_decay'], group['nesterov']
        for p in group['params']:
            g = self._gradient(p)
            if g is None:
                continue  # no gradient: not moved, state untouched
            if weight_decay != 0:
                g = g + weight_decay * p.value
            if momentum != 0:
                state = self.state.setdefault(p, {})
                buf = state.get('momentum_buffer')
                if buf is None:
                    buf = state['momentum_buffer'] = np.array(g, copy=True)
                else:
                    buf *= momentum
                    buf += g if dampening == 0 else (1 - dampening) * g
                g = g + momentum * buf if nesterov else buf
            p.value -= lr * g


class Adam(Optimizer):
    """
    Adam (Kingma and Ba), as torch.optim.Adam. For each parameter p with gradient g, at its own step
    t = 1, 2, ... (counted per parameter, from the first step at which it has a gradient):
        g = g + weight_decay * p                                        (if weight_decay)
        m = m + (1 - beta1) (g - m)             the running mean of the gradients (starts at 0)
        v = beta2 v + (1 - beta2) g^2           the running mean of their squares (starts at 0)
        vmax = max(vmax, v), used instead of v below                    (if amsgrad)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    The divisions by 1 - beta^t undo the bias of m and v towards their zero start.
    """

    _state_keys = ('step', 'exp_avg', 'exp_avg_sq', 'max_exp_avg_sq')

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad))

    betas, eps, weight_decay, amsgrad = (_setting(name) for name in ('betas', 'eps', 'weight_decay', 'amsgrad'))

    def _checked_group(self, group, where):
        group = super()._checked_group(group, where)
        betas = group['betas']
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f'{where}: betas must be a pair (beta1, beta2), got {betas!r}') from None
        group['betas'] = tuple(_hyperparameter(beta, where, f'beta parameter at index {i}', high=1.0)
                               for i, beta in enumerate((beta1, beta2)))
        group['eps'] = _hyperparameter(group['eps'], where, 'epsilon value')
        group['weight_decay'] = _hyperparameter(group['weight_decay'], where, 'weight_decay value')
        group['amsgrad'] = bool(group['amsgrad'])
        return group

    def _loaded_state(self, saved, p, where):
        state = super()._loaded_state(saved, p, where)
        missing = [key for key in ('step', 'exp_avg', 'exp_avg_sq') if key not in state]
        if state and missing:
            raise ValueError(f'{where}: the state lacks {", ".join(missing)}')
        return state

    def _update(self, group):
        lr, (beta1, beta2), eps = group['lr'], group['betas'], group['eps']
        weight_decay, amsgrad = group['weight_decay'], group['amsgrad']
        for p in group['params']:
            g = self._gradient(p)
            if g is None:
                continue  # no gradient: not moved, state (and step count) untouched
            state = self.state.get(p)
            if not state:
                zeros = np.zeros(p.value.shape, dtype=grad_dtype(p.value))
                state = self.state[p] = {'step': 0, 'exp_avg': zeros, 'exp_avg_sq': zeros.copy()}
            state['step'] = step = state['step'] + 1
            if weight_decay != 0:
                g = g + weight_decay * p.value
            m, v = state['exp_avg'], state['exp_avg_sq']
            _lerp(m, g, 1 - beta1)
            v *= beta2
            v += ((1 - beta2) * g) * g
            bias_correction1 = 1 - beta1 ** step
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            step_size = lr / bias_correction1
            if amsgrad:
                vmax = state.get('max_exp_avg_sq')
                if vmax is None:  # amsgrad switched on after this parameter's first steps
                    vmax = state['max_exp_avg_sq'] = np.zeros_like(v)
                np.maximum(vmax, v, out=vmax)
                v = vmax
            denom = np.sqrt(v) / bias_correction2_sqrt
            denom += eps
            p.value += (-step_size * m) / denom


def _lerp(start, end, weight):
    """start += weight * (end - start), in place, with the formula torch's lerp_ takes for this weight."""
    if abs(weight) < 0.5:
        start += weight * (end - start)
    else:
        np.subtract(end, (end - start) * (1 - weight), out=start)


def _hyperparameter(value, where, what, low=0.0, high=math.inf):
    """value as a float, if it is a finite number with low <= value < high; else torch's 'Invalid ...' error."""
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f'{where}: the {what.replace(" value", "")} must be a number, got {value!r}') from None
    if not (low <= number < high) or not math.isfinite(number):
        if high < math.inf:
            bounds = f'it must lie in [{low:g}, {high:g})'
        elif low > -math.inf:
            bounds = f'it must be a finite number >= {low:g}'
        else:
            bounds = 'it must be a finite number'
        raise ValueError(f'{where}: Invalid {what}: {value} ({bounds})')
    return number


def _as_list(params, where):
    """The parameters (or parameter groups) as a list, or a TypeError that says what to pass instead."""
    if isinstance(params, Module):
        raise TypeError(f'{where}: got the module {type(params).__name__} itself; pass model.parameters()')
    if isinstance(params, TensorNode):
        raise TypeError(f'{where}: params should be an iterable of TensorNodes, but got one TensorNode; pass a list, '
                        f'[node], or model.parameters()')
    if isinstance(params, np.ndarray):
        raise TypeError(f'{where}: got a NumPy array; an optimizer updates TensorNodes: pass model.parameters(), or '
                        f'wrap your arrays, [vg.TensorNode(array), ...]')
    if isinstance(params, (set, frozenset)):
        raise TypeError(f'{where}: optimizer parameters need to be organized in ordered collections, but the ordering '
                        f'of a set changes between runs (and with it the state_dict); please use a list instead')
    if isinstance(params, dict):
        raise TypeError(f'{where}: got a dict; pass a list of parameter groups, [{{"params": ...}}, ...], or '
                        f'model.parameters()')
    try:
        iterator = iter(params)
    except TypeError:
        raise TypeError(f'{where}: params should be an iterable of TensorNodes (or of dicts, one per parameter group), '
                        f'got a {type(params).__name__}; pass model.parameters()') from None
    return list(iterator)


def _check_parameter(p, i, where):
    """Refuses what cannot be a parameter, saying what to pass instead."""
    if isinstance(p, TensorNode):
        if p.source is not None:
            raise ValueError(f"{where}: can't optimize a non-leaf TensorNode: parameter {i} was computed by "
                             f"{p.source.op.__name__}; pass the parameters themselves (model.parameters())")
        if p.value.dtype.kind != 'f':
            raise TypeError(f'{where}: parameter {i} has dtype {p.value.dtype}, but optimizers update values in place, '
                            f'so they must be floating point (e.g. vg.TensorNode(array.astype(np.float64)))')
        return
    if isinstance(p, Module):
        fix = 'pass model.parameters(), not a list of modules'
    elif isinstance(p, np.ndarray):
        fix = 'pass model.parameters(), or wrap arrays, vg.TensorNode(array)'
    elif isinstance(p, dict):
        fix = 'give either TensorNodes or parameter groups (dicts), not both'
    else:
        fix = 'pass model.parameters()'
    raise TypeError(f'{where}: optimizer can only optimize TensorNodes, but parameter {i} is a '
                    f'{type(p).__name__}; {fix}')


__all__ = ['Optimizer', 'SGD', 'Adam']
