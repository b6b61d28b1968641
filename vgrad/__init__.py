"""
vgrad: vugrad's miniature autodiff library with every op computed by C kernels.

    import vgrad as vg        # instead of: import vugrad as vg

Course code runs unchanged and gives the same numbers, faster. The Python layer is meant to be read:
core.py holds the graph and backpropagation, ops.py the ops (each with its NumPy reference formula),
functions.py and modules.py what is built from them.
"""
from . import core, data, functions, modules, ops
from .core import Module, Op, OpNode, TensorNode, no_grad
from .data import load_fashion_mnist, load_mnist, load_synth
from .functions import celoss, logceloss, logsoftmax, relu, sigmoid, softmax
from .modules import MLP, Linear
from .ops import (ALL_OPS, Add, BatchMM, Div, Exp, Expand, Id, Log, MatrixMultiply, Multiply, Normalize, ReLU,
                  RowMax, RowSum, Select, Sigmoid, Squeeze, Sub, Sum, Unsqueeze)

__version__ = '0.1.0'
