"""
Optimizers: SGD (with momentum and weight decay) and Adam, with PyTorch's update rules written out step by
step in the same order, so that the same parameters and gradients give the same numbers as torch.optim.

    opt = vg.Adam(model.parameters(), lr=1e-3)
    ...
    loss.backward()
    opt.step()        # update every parameter's value in place from its .grad
    opt.zero_grad()   # set the gradients to zero for the next batch

They update `param.value` in place, so the next forward pass sees the new values.
"""
import numpy as np

from .core import TensorNode


class Optimizer:
    """Holds the parameters (TensorNodes) and whatever state the update rule keeps for each of them."""

    def __init__(self, params, lr):
        self.params = list(params)
        for i, p in enumerate(self.params):
            if not isinstance(p, TensorNode):
                raise TypeError(f'{type(self).__name__}: parameter {i} is a {type(p).__name__}, not a TensorNode '
                                f'(pass model.parameters())')
        if not lr >= 0:
            raise ValueError(f'{type(self).__name__}: the learning rate must be >= 0, got {lr}')
        self.lr = lr

    def zero_grad(self):
        """Set every parameter's gradient to zero."""
        for p in self.params:
            p.grad.fill(0)

    def step(self):
        raise NotImplementedError


class SGD(Optimizer):
    """
    Stochastic gradient descent. For each parameter p with gradient g:
        g = g + weight_decay * p                      (if weight_decay)
        buf = g (first step), else buf = momentum * buf + g,  and g = buf   (if momentum)
        p = p - lr * g
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        if not momentum >= 0 or not weight_decay >= 0:
            raise ValueError(f'SGD: momentum and weight_decay must be >= 0, got {momentum} and {weight_decay}')
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffers = [None] * len(self.params)  # the momentum buffer of each parameter

    def step(self):
        for i, p in enumerate(self.params):
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.value
            if self.momentum:
                if self.buffers[i] is None:
                    self.buffers[i] = np.array(g, copy=True)
                else:
                    self.buffers[i] *= self.momentum
                    self.buffers[i] += g
                g = self.buffers[i]
            p.value -= self.lr * g


class Adam(Optimizer):
    """
    Adam (Kingma and Ba), as torch.optim.Adam. For each parameter p with gradient g, at step t = 1, 2, ...:
        g = g + weight_decay * p                                        (if weight_decay)
        m = m + (1 - beta1) (g - m)             the running mean of the gradients (starts at 0)
        v = beta2 v + (1 - beta2) g^2           the running mean of their squares (starts at 0)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    The divisions by 1 - beta^t undo the bias of m and v towards their zero start.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        beta1, beta2 = betas
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f'Adam: betas must lie in [0, 1), got {betas}')
        if not eps >= 0 or not weight_decay >= 0:
            raise ValueError(f'Adam: eps and weight_decay must be >= 0, got {eps} and {weight_decay}')
        self.betas, self.eps, self.weight_decay = (beta1, beta2), eps, weight_decay
        self.t = 0
        self.m = [None] * len(self.params)
        self.v = [None] * len(self.params)

    def step(self):
        beta1, beta2 = self.betas
        self.t += 1
        step = float(self.t)
        step_size = self.lr / (1 - beta1 ** step)
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        for i, p in enumerate(self.params):
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.value
            if self.m[i] is None:
                self.m[i] = np.zeros_like(p.value)
                self.v[i] = np.zeros_like(p.value)
            m, v = self.m[i], self.v[i]
            m += (1 - beta1) * (g - m)
            v *= beta2
            v += ((1 - beta2) * g) * g
            denom = np.sqrt(v) / bias_correction2_sqrt
            denom += self.eps
            p.value += (-step_size * m) / denom


__all__ = ['Optimizer', 'SGD', 'Adam']
