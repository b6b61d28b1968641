"""
Modules: parameters together with the function that uses them. Linear is vugrad's; MLP is the model of the
course script (experiments/train_mlp.py).
"""
import json
import os

import numpy as np

from .core import Module, TensorNode, _not_a_node
from .functions import fused, logsoftmax, sigmoid
from .nn import _check_input_dtype, _int, parameter_alias
from .ops import Affine, BatchMM, Expand


class Linear(Module):
    """
    A linear layer: y = W x + b for each input vector x (each row of the input matrix).

    W (output_size, input_size) is drawn with Glorot's scale, b (1, output_size) starts at zero, from
    np.random exactly as vugrad does, so a seeded run gives the same weights under both.

    The parameters are vugrad's attributes `w` and `b`; `weight` and `bias` (PyTorch's names) are the same
    TensorNodes, and state_dict() and named_parameters() use those names. (The bias is a (1, output_size)
    matrix, as in vugrad; PyTorch's is a vector.)
    """

    _parameter_names = {'w': 'weight', 'b': 'bias'}

    def __init__(self, input_size, output_size):
        super().__init__()
        input_size = _int('Linear', 'input_size', input_size, 1)
        output_size = _int('Linear', 'output_size', output_size, 1)
        glorot_std = np.sqrt(2.0 / (input_size + output_size))
        self.w = TensorNode(np.random.randn(output_size, input_size) * glorot_std)
        self.b = TensorNode(np.zeros((1, output_size)))

    weight = parameter_alias('w', "The weight matrix W (output_size, input_size): the same TensorNode as `w`.")
    bias = parameter_alias('b', "The bias (1, output_size): the same TensorNode as `b`.")

    def forward(self, input):
        try:
            x = input.value
        except AttributeError:
            raise _not_a_node('Linear', input) from None
        w = self.w.value
        shape = x.shape
        if len(shape) != 2 or shape[1] != w.shape[1]:
            outsize, insize = w.shape
            raise ValueError(f'Linear({insize}, {outsize}): expected an input of shape (n, {insize}), got {shape}')
        if x.dtype is not w.dtype:
            _check_input_dtype('Linear', x, w, 'weights')
        if fused():
            return Affine.do_forward(self.w, self.b, input)  # the three ops below in one

        n = shape[0]
        x = BatchMM.do_forward(self.w, input)
        # Broadcast the (1, outsize) bias over the n rows. NumPy would broadcast `x + b` by itself, but then we
        # would get no gradient for it: Expand is the minimal broadcasting op.
        exb = Expand.do_forward(self.b, dim=0, repeats=n)
        return x + exb

    def parameters(self):
        return [self.w, self.b]

    def extra_repr(self):
        outsize, insize = self.w.value.shape
        return f'in_features={insize}, out_features={outsize}, bias=True'


class MLP(Module):
    """
    The course's network: a hidden layer with a sigmoid, and log-probabilities out.
    input -> Linear -> sigmoid -> Linear -> logsoftmax.
    """

    def __init__(self, input_size, output_size, hidden_mult=4):
        """
        :param hidden_mult: how many times bigger the hidden layer is than the input layer.
        """
        super().__init__()
        hidden_size = hidden_mult * input_size
        self.layer1 = Linear(input_size, hidden_size)
        self.layer2 = Linear(hidden_size, output_size)

    def forward(self, input):
        hidden = sigmoid(self.layer1(input))
        return logsoftmax(self.layer2(hidden))

    def parameters(self):
        return self.layer1.parameters() + self.layer2.parameters()


# ---- saving and loading state dicts: NumPy's .npz, never pickle --------------------------------------------

_TREE = '__vgrad_tree__'  # the member of the .npz file that describes the saved object (JSON)


def save(obj, f):
    """
    Save a state dict to a file: a model's, `vg.save(model.state_dict(), 'model.npz')`, or an optimizer's,
    or any nesting of dicts, lists and tuples of arrays, numbers, strings, booleans and None. (A TensorNode
    is saved as its array.) `f` is a path (written exactly as named, atomically) or a binary file.

    The file is NumPy's .npz: the arrays, and a JSON description of the nesting. Nothing is pickled, so
    loading a file cannot run code (unlike torch.save/torch.load of a whole model); save a model's
    state_dict(), and load it into a model built the same way: `model.load_state_dict(vg.load(path))`.
    """
    if isinstance(obj, Module):
        raise TypeError(f'vg.save: got the module {type(obj).__name__} itself; save its state, '
                        f'vg.save(model.state_dict(), path), and load it into a model built the same way: '
                        f'model.load_state_dict(vg.load(path)). (vgrad files hold arrays and plain values only, '
                        f'never pickled objects, so loading one cannot run code)')
    arrays = {}
    tree = _encode(obj, arrays, 'the object')
    arrays[_TREE] = np.array(json.dumps(tree))
    if hasattr(f, 'write'):
        np.savez(f, **arrays)
        return
    path = os.fspath(f)
    temporary = f'{path}.{os.getpid()}.tmp'
    try:
        with open(temporary, 'wb') as out:
            np.savez(out, **arrays)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def load(f):
    """
    Load what vg.save saved (a path or a binary file), with the same nesting; the arrays are NumPy arrays.
    A plain .npz file of arrays, such as np.savez(path, **model.state_dict()) writes, loads as a dict of
    them. Nothing is unpickled (np.load(allow_pickle=False)).
    """
    with np.load(f, allow_pickle=False) as npz:
        if _TREE not in npz.files:
            return {name: npz[name] for name in npz.files}
        arrays = {name: npz[name] for name in npz.files}
    return _decode(json.loads(str(arrays.pop(_TREE)[()])), arrays)


def _encode(obj, arrays, where):
    """obj as JSON, with its arrays put into `arrays` under names a0, a1, ..."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, TensorNode):
        obj = obj.value
    if isinstance(obj, (np.ndarray, np.generic)):
        if obj.dtype.hasobject:
            raise TypeError(f'vg.save: cannot save {where}, an array of Python objects (only pickle can)')
        name = f'a{len(arrays)}'
        arrays[name] = np.asarray(obj)
        return {'array' if isinstance(obj, np.ndarray) else 'scalar': name}
    if isinstance(obj, dict):
        return {'dict': [[_encode(key, arrays, f'a key in {where}'), _encode(value, arrays, f'{where}[{key!r}]')]
                         for key, value in obj.items()]}
    if isinstance(obj, (list, tuple)):
        kind = 'list' if isinstance(obj, list) else 'tuple'
        return {kind: [_encode(item, arrays, f'{where}[{i}]') for i, item in enumerate(obj)]}
    hint = '; save its state_dict() instead' if hasattr(obj, 'state_dict') else ''
    raise TypeError(f'vg.save: cannot save {where}, of type {type(obj).__name__}: vgrad saves dicts, lists and '
                    f'tuples of arrays, numbers, strings and None{hint}')


def _decode(tree, arrays):
    if not isinstance(tree, dict):
        return tree
    (kind, content), = tree.items()
    if kind == 'array':
        return arrays[content]
    if kind == 'scalar':
        return arrays[content][()]
    if kind == 'dict':
        return {_decode(key, arrays): _decode(value, arrays) for key, value in content}  # tuple keys: tuples
    items = [_decode(item, arrays) for item in content]
    return items if kind == 'list' else tuple(items)


__all__ = ['Linear', 'MLP', 'save', 'load']
