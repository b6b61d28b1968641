"""
A small package with vugrad's API and semantics, written for the overlay tests (not a copy of anyone's code),
and the edits a student makes to such a package. The tests write it to a folder named `vugrad`, register it
as "upstream" through the same fingerprint files the real upstream uses (python -m vgrad.overlay.regenerate
on a folder, listed in $VGRAD_OVERLAY_UPSTREAM), then run scripts with it on its own and under
`python -m vgrad.as_vugrad`.

Its graph machinery is deliberately vugrad's kind (recursive backward, grads allocated as zeros) and its
formulas are vugrad's, so that a script prints the same numbers whichever machinery and kernels run it.
"""
import os
import subprocess
import sys
import textwrap

UPSTREAM = {
    '__init__.py': '''
        from .core import TensorNode, OpNode, Op, Module, Add, Sub, Multiply, MatrixMultiply
        from .ops import *
        from .modules import *
        from .functions import load_synth, celoss, logceloss, sigmoid, logsoftmax
    ''',
    'core.py': '''
        import numpy as np


        class TensorNode:
            """A value in the graph, with the op node that made it."""

            def __init__(self, value, source=None, name=None):
                self.value, self.source, self.name = value, source, name
                self.grad = np.zeros(value.shape)
                self.numparents = 0
                self.visits = 0

            def size(self, dim=None):
                return self.value.shape if dim is None else self.value.shape[dim]

            def backward(self, start=True):
                if start:
                    self.grad = np.ones_like(self.value)
                self.visits += 1
                if (start or self.visits == self.numparents) and self.source is not None:
                    self.source.backward()

            def zero_grad(self):
                self.grad.fill(0.0)
                if self.source is not None:
                    for node in self.source.inputs:
                        node.zero_grad()

            def clear(self):
                if self.source is not None:
                    for node in self.source.inputs:
                        node.clear()
                    self.source.inputs = self.source.outputs = None
                self.source = None
                self.visits = self.numparents = 0

            def __add__(self, other):
                if type(other) == float:
                    other = TensorNode(np.asarray(other))
                return Add.do_forward(self, other)

            def __sub__(self, other):
                if type(other) == float:
                    other = TensorNode(np.asarray(other))
                return Sub.do_forward(self, other)

            def __mul__(self, other):
                if type(other) == float:
                    other = TensorNode(np.asarray(other))
                return Multiply.do_forward(self, other)


        class OpNode:
            def __init__(self, op, context, inputs):
                self.op, self.context, self.inputs = op, context, inputs
                self.outputs = None
                self.visits = 0

            def backward(self):
                grads = self.op.backward(self.context, *[o.grad for o in self.outputs])
                if type(grads) != tuple:
                    grads = (grads,)
                for node, grad in zip(self.inputs, grads):
                    node.grad += grad
                self.visits += 1
                if self.visits == len(self.outputs):
                    for node in self.inputs:
                        node.backward(start=False)


        class Op:
            @classmethod
            def do_forward(cls, *inputs, **kwargs):
                context = {}
                for node in inputs:
                    node.numparents += 1
                raw = cls.forward(context, *[node.value for node in inputs], **kwargs)
                raw = raw if type(raw) == tuple else (raw,)
                opnode = OpNode(cls, context, inputs)
                outputs = [TensorNode(value, source=opnode) for value in raw]
                opnode.outputs = outputs
                return outputs[0] if len(outputs) == 1 else outputs


        class Module:
            def __call__(self, *args, **kwargs):
                return self.forward(*args, **kwargs)


        class Add(Op):
            @staticmethod
            def forward(context, a, b):
                return a + b

            @staticmethod
            def backward(context, go):
                return go, go


        class Sub(Op):
            @staticmethod
            def forward(context, a, b):
                return a - b

            @staticmethod
            def backward(context, go):
                return go, -go


        class Multiply(Op):
            @staticmethod
            def forward(context, a, b):
                context['a'], context['b'] = a, b
                return a * b

            @staticmethod
            def backward(context, go):
                return go * context['b'], go * context['a']


        class MatrixMultiply(Op):
            @staticmethod
            def forward(context, a, b):
                context['a'], context['b'] = a, b
                return np.matmul(a, b)

            @staticmethod
            def backward(context, go):
                return np.matmul(go, context['b'].T), np.matmul(context['a'].T, go)
    ''',
    'ops.py': '''
        import numpy as np

        from .core import Op


        class Log(Op):
            @staticmethod
            def forward(context, x):
                context['x'] = x
                return np.log(x)

            @staticmethod
            def backward(context, go):
                return go / context['x']


        class Exp(Op):
            @staticmethod
            def forward(context, x):
                context['expd'] = np.exp(x)
                return context['expd']

            @staticmethod
            def backward(context, go):
                return go * context['expd']


        class Sum(Op):
            @staticmethod
            def forward(context, x):
                context['xsize'] = x.shape
                return np.asarray(x.sum())

            @staticmethod
            def backward(context, go):
                return np.full(shape=context['xsize'], fill_value=go)


        class RowMax(Op):
            @staticmethod
            def forward(context, x):
                context['xshape'], context['idxs'] = x.shape, np.argmax(x, axis=1)
                return np.amax(x, axis=1)

            @staticmethod
            def backward(context, go):
                z = np.zeros(shape=context['xshape'])
                z[np.arange(go.shape[0]), context['idxs']] = go
                return z


        class RowSum(Op):
            @staticmethod
            def forward(context, x):
                context['xshape'] = x.shape
                return np.sum(x, axis=1)

            @staticmethod
            def backward(context, go):
                return np.broadcast_to(go.copy()[:, None], shape=context['xshape'])


        class BatchMM(Op):
            @staticmethod
            def forward(context, matrix, vectors):
                context['matrix'], context['vectors'] = matrix, vectors
                return np.matmul(vectors, matrix.T)

            @staticmethod
            def backward(context, go):
                return np.matmul(go.T, context['vectors']), np.matmul(go, context['matrix'])


        class Sigmoid(Op):
            @staticmethod
            def forward(context, input):
                sigx = 1 / (1 + np.exp(-input))
                context['sigx'] = sigx
                return sigx

            @staticmethod
            def backward(context, goutput):
                sigx = context['sigx']
                return goutput * sigx * (1 - sigx)


        class Expand(Op):
            @staticmethod
            def forward(context, input, *, dim, repeats):
                context['dim'] = dim
                return np.repeat(input, repeats, axis=dim)

            @staticmethod
            def backward(context, goutput):
                return goutput.sum(axis=context['dim'], keepdims=True)


        class Select(Op):
            @staticmethod
            def forward(context, input, *, indices):
                context['input_size'] = input.shape
                context['indices'] = indices[:, None]
                return np.take_along_axis(input, indices=context['indices'], axis=1).squeeze()

            @staticmethod
            def backward(context, goutput):
                res = np.zeros(context['input_size'])
                np.put_along_axis(res, indices=context['indices'], values=goutput[:, None], axis=1)
                return res


        class Unsqueeze(Op):
            @staticmethod
            def forward(context, input, dim=0):
                context['dim'] = dim
                return np.expand_dims(input, axis=dim)

            @staticmethod
            def backward(context, goutput):
                return goutput.squeeze(context['dim'])
    ''',
    'functions.py': '''
        import numpy as np

        from .ops import Exp, Expand, Log, RowMax, RowSum, Select, Sigmoid, Sum, Unsqueeze


        def load_synth(num_train=60_000, num_val=10_000):
            quad = np.asarray([[1, 0.5], [1, .2]])
            x = np.random.randn(num_train + num_val, 2)
            q = np.einsum('bf, fk, bk -> b', x, quad, x)
            y = (q > 0.6).astype(int)
            return (x[:num_train, :], y[:num_train]), (x[num_train:, :], y[num_train:]), 2


        def celoss(outputs, targets):
            return logceloss(Log.do_forward(outputs), targets)


        def logceloss(logprobs, targets):
            per_instance = Select.do_forward(logprobs, indices=targets)
            return Sum.do_forward(per_instance) * - 1.0


        def sigmoid(x):
            return Sigmoid.do_forward(x)


        def logsoftmax(x):
            xcols = x.value.shape[1]
            xmax = RowMax.do_forward(x)
            xmax = Unsqueeze.do_forward(xmax, dim=1)
            xmax = Expand.do_forward(xmax, repeats=xcols, dim=1)
            diff = x - xmax
            denominator = RowSum.do_forward(Exp.do_forward(diff))
            denominator = Log.do_forward(denominator)
            denominator = Unsqueeze.do_forward(denominator, dim=1)
            denominator = Expand.do_forward(denominator, repeats=xcols, dim=1)
            return diff - denominator
    ''',
    'modules.py': '''
        import numpy as np

        from .core import Module, TensorNode
        from .ops import *
        from .functions import *


        class Linear(Module):
            def __init__(self, input_size, output_size):
                super().__init__()
                std = np.sqrt(2.0 / (input_size + output_size))
                self.w = TensorNode(np.random.randn(output_size, input_size) * std)
                self.b = TensorNode(np.zeros((1, output_size)))

            def forward(self, input):
                n = input.size(0)
                x = BatchMM.do_forward(self.w, input)
                exb = Expand.do_forward(self.b, dim=0, repeats=n)
                return x + exb

            def parameters(self):
                return [self.w, self.b]
    ''',
}

# Edits a student makes: (file, old text, new text), in the coordinates of the dedented files (methods are
# indented by four spaces). Each old text must occur exactly once.
EDITS = {
    # A new op (the assignment's question 9) whose backward is wrong: it lets every gradient through.
    'wrong_relu': [('ops.py', 'class Unsqueeze(Op):', (
        'class ReLU(Op):\n'
        '    @staticmethod\n'
        '    def forward(context, x):\n'
        '        context[\'x\'] = x\n'
        '        return np.maximum(x, 0)\n'
        '\n'
        '    @staticmethod\n'
        '    def backward(context, go):\n'
        '        return go  # wrong: should be go * (context[\'x\'] > 0)\n'
        '\n\n'
        'class Unsqueeze(Op):'))],
    # A new keyword in Linear: He initialisation.
    'linear_init': [('modules.py', (
        '    def __init__(self, input_size, output_size):\n'
        '        super().__init__()\n'
        '        std = np.sqrt(2.0 / (input_size + output_size))'), (
        '    def __init__(self, input_size, output_size, init=\'glorot\'):\n'
        '        super().__init__()\n'
        '        std = np.sqrt((2.0 if init == \'he\' else 2.0 * input_size / (input_size + output_size))\n'
        '                      / input_size)'))],
    # A clipped sigmoid: the student's Sigmoid, and so the `sigmoid` function that uses it, run as written.
    'clipped_sigmoid': [('ops.py', 'sigx = 1 / (1 + np.exp(-input))',
                         'sigx = 1 / (1 + np.exp(-np.clip(input, -8, 8)))')],
    # A method added to TensorNode, and a Div op for it (the assignment's question 1).
    'division': [
        ('core.py', '    def __mul__(self, other):', (
            '    def __truediv__(self, other):\n'
            '        return Div.do_forward(self, other)\n'
            '\n'
            '    def __mul__(self, other):')),
        ('core.py', 'class MatrixMultiply(Op):', (
            'class Div(Op):\n'
            '    @staticmethod\n'
            '    def forward(context, a, b):\n'
            '        context[\'a\'], context[\'b\'] = a, b\n'
            '        return a / b\n'
            '\n'
            '    @staticmethod\n'
            '    def backward(context, go):\n'
            '        return go / context[\'b\'], -go * context[\'a\'] / (context[\'b\'] ** 2)\n'
            '\n\n'
            'class MatrixMultiply(Op):'))],
}
# A submodule of the student's own.
CUSTOM_OPS = '''
    import numpy as np

    from .core import Op


    class Tanh(Op):
        @staticmethod
        def forward(context, x):
            context['y'] = np.tanh(x)
            return context['y']

        @staticmethod
        def backward(context, go):
            return go * (1 - context['y'] ** 2)
'''


def _dedent(text):
    return textwrap.dedent(text).lstrip('\n')


def write_package(folder, edits=(), extra_files=None):
    """Writes the package to folder/vugrad with the named edits applied; returns folder/vugrad."""
    files = {name: _dedent(text) for name, text in UPSTREAM.items()}
    for edit in edits:
        for name, old, new in EDITS[edit]:
            assert files[name].count(old) == 1, (edit, name, old)
            files[name] = files[name].replace(old, new)
    for name, text in (extra_files or {}).items():
        files[name] = _dedent(text)
    package = os.path.join(folder, 'vugrad')
    os.makedirs(package, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(package, name), 'w') as f:
            f.write(text)
    return package


def register_upstream(folder, out):
    """Fingerprints the unmodified package (written to `folder`) into `out`, as course staff would."""
    write_package(folder)
    subprocess.run([sys.executable, '-m', 'vgrad.overlay.regenerate', folder, '--label', 'test-upstream',
                    '--out', out], check=True, capture_output=True)
    return out
