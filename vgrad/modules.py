"""
Modules: parameters together with the function that uses them. Linear is vugrad's; MLP is the model of the
course script (experiments/train_mlp.py).
"""
import numpy as np

from .core import Module, TensorNode
from .functions import fused, logsoftmax, sigmoid
from .ops import Affine, BatchMM, Expand


class Linear(Module):
    """
    A linear layer: y = W x + b for each input vector x (each row of the input matrix).

    W (output_size, input_size) is drawn with Glorot's scale, b (1, output_size) starts at zero, from
    np.random exactly as vugrad does, so a seeded run gives the same weights under both.
    """

    def __init__(self, input_size, output_size):
        super().__init__()
        glorot_std = np.sqrt(2.0 / (input_size + output_size))
        self.w = TensorNode(np.random.randn(output_size, input_size) * glorot_std)
        self.b = TensorNode(np.zeros((1, output_size)))

    def forward(self, input):
        outsize, insize = self.w.size()
        if len(input.size()) != 2 or input.size(1) != insize:
            raise ValueError(f'Linear({insize}, {outsize}): expected an input of shape (n, {insize}), '
                             f'got {input.size()}')
        if fused():
            return Affine.do_forward(self.w, self.b, input)  # the three ops below in one

        n = input.size(0)
        x = BatchMM.do_forward(self.w, input)
        # Broadcast the (1, outsize) bias over the n rows. NumPy would broadcast `x + b` by itself, but then we
        # would get no gradient for it: Expand is the minimal broadcasting op.
        exb = Expand.do_forward(self.b, dim=0, repeats=n)
        return x + exb

    def parameters(self):
        return [self.w, self.b]


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


__all__ = ['Linear', 'MLP']
