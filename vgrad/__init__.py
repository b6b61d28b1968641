"""
vgrad: vugrad's miniature autodiff library with every op computed by C kernels.

    import vgrad as vg        # instead of: import vugrad as vg

Course code runs unchanged and gives the same numbers, faster. The Python layer is meant to be read:
core.py holds the graph and backpropagation, ops.py the ops (each with its NumPy reference formula),
functions.py and modules.py what is built from them.
"""
try:
    from . import _C  # the kernels; `pip install -e .` builds them in place
except ImportError as _error:
    from ._build import missing_extension as _missing
    raise _missing(_error) from None

import os as _os

if _os.environ.get('VGRAD_PURE_PYTHON'):
    # Run core.py as Python instead of the module Cython compiled from it (see core.py): the same code, to
    # step through or profile. Everything else imports vgrad.core from sys.modules.
    from ._pure import load_core_as_python as _load
    _load()
    del _load

from . import core, data, functions, modules, ops
from .core import (DTypeWarning, GraphWarning, Module, NonFiniteWarning, Op, OpNode, TensorNode, VgradWarning,
                   no_grad)
from .data import load_cifar10, load_fashion_mnist, load_mnist, load_synth
from .functions import celoss, fused, logceloss, logsoftmax, relu, sigmoid, softmax, unfused
from .gradcheck import GradcheckError, gradcheck
from .graph_draw import to_dot
from .memory import cache_info, empty_cache, set_cache_limit
from .threads import get_num_threads, set_num_threads
from .modules import MLP, Linear
from .ops import ALL_OPS
globals().update({_op.__name__: _op for _op in ALL_OPS})  # every built-in op under its name: vg.Sigmoid, vg.Convolution
from . import nn, nn_ops, optim
from .nn import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, MaxPool2d, Sequential, avg_pool2d,
                 batch_norm, conv2d, cross_entropy, dropout, flatten, max_pool2d, reshape, to_dtype)
from .optim import SGD, Adam
from .modules import load, save  # state dicts in .npz files

__version__ = '0.1.0'
