"""
The workloads written as the course writes them (dlvu/vugrad's experiments/train_mlp.py), for a library
with vugrad's API: vgrad, or vugrad itself. Both run this same Python; only the module `vg` differs.

Each function returns what measure.timed_repeats does: wall and CPU times per repeat, and the values the
libraries must agree on: the loss of every step of the first repeat (training), the chain's output
(overhead), or the validation loss and accuracy (validation).
"""
import contextlib

import numpy as np

from benchmarks.measure import NotAvailable, timed_repeats


def course_mlp(vg, sizes, weights):
    """The course script's MLP (input -> Linear -> sigmoid -> Linear -> logsoftmax), with the given weights."""

    class MLP(vg.Module):
        def __init__(self, input_size, output_size, hidden_mult=4):
            super().__init__()
            hidden_size = hidden_mult * input_size
            self.layer1 = vg.Linear(input_size, hidden_size)
            self.layer2 = vg.Linear(hidden_size, output_size)

        def forward(self, input):
            hidden = vg.sigmoid(self.layer1(input))
            return vg.logsoftmax(self.layer2(hidden))

        def parameters(self):
            return self.layer1.parameters() + self.layer2.parameters()

    n_in, n_hidden, n_out = sizes
    mlp = MLP(input_size=n_in, output_size=n_out, hidden_mult=n_hidden // n_in)
    for parm, w in zip(mlp.parameters(), weights):
        if parm.value.shape != w.shape:
            raise ValueError(f'course MLP parameter of shape {parm.value.shape}, initial weights {w.shape}')
        parm.value = w.copy()  # in the workload's dtype (Linear makes float64)
    return mlp


def input_node(vg, row):
    """How the row wraps an input batch: as the course does, or with the requires_grad=False opt-out."""
    if row.input_grad:
        return lambda array: vg.TensorNode(value=array)
    try:
        vg.TensorNode(np.zeros(1), requires_grad=False)
    except TypeError:
        raise NotAvailable('TensorNode(..., requires_grad=False) is not implemented') from None
    return lambda array: vg.TensorNode(value=array, requires_grad=False)


def reset_weights(mlp, weights):
    for parm, w in zip(mlp.parameters(), weights):
        parm.value[...] = w


def train(vg, workload, row, inputs):
    x, y, weights = inputs['x'], inputs['y'], inputs['weights']
    dtype, b, lr = np.dtype(workload.dtype), workload.batch, workload.lr
    mlp = course_mlp(vg, workload.sizes, weights)
    wrap = input_node(vg, row)
    # Op by op (W5): vgrad builds Linear as BatchMM, Expand and Add, and logsoftmax and logceloss op by op,
    # the graphs a student who writes those ops gets; vugrad's are always so.
    graphs = vg.unfused if workload.unfused and hasattr(vg, 'unfused') else contextlib.nullcontext

    def epoch(rows):
        losses = []
        for fr in range(0, rows, b):
            to = min(fr + b, rows)
            batch, targets = np.asarray(x[fr:to], dtype=dtype), y[fr:to]
            batch = wrap(batch)

            with graphs():
                outputs = mlp(batch)
                loss = vg.logceloss(outputs, targets)
            losses.append(loss.value.item())

            loss.backward()
            for parm in mlp.parameters():
                parm.value -= lr * parm.grad
            loss.zero_grad()
            loss.clear()
        return losses

    epoch(min(workload.warmup * b, workload.timed_rows))
    return timed_repeats(lambda: epoch(workload.timed_rows), workload.repeats,
                         reset=lambda: reset_weights(mlp, weights))


def overhead(vg, workload, row, inputs):
    """Forward+backward of the 2x2 chain, with zero_grad() and clear() as a course training step does."""
    x, w = vg.TensorNode(inputs['x']), vg.TensorNode(inputs['w'])

    def passes(n):
        value = None
        for _ in range(n):
            h = x
            for _ in range(workload.chain):
                h = vg.Sigmoid.do_forward(vg.Add.do_forward(h, w))
                h = vg.MatrixMultiply.do_forward(h, w)
            loss = vg.Sum.do_forward(h)
            value = loss.value.item()
            loss.backward()
            loss.zero_grad()
            loss.clear()
        return [value]

    passes(workload.warmup)
    return timed_repeats(lambda: passes(workload.iterations), workload.repeats)


def validate(vg, workload, row, inputs):
    """The course script's validation accuracy: one forward pass over the validation set."""
    x, y, dtype = inputs['x'], inputs['y'], np.dtype(workload.dtype)
    mlp = course_mlp(vg, workload.sizes, inputs['weights'])
    if row.no_grad and not hasattr(vg, 'no_grad'):
        raise NotAvailable('vg.no_grad() is not implemented')

    def run():
        if row.no_grad:
            with vg.no_grad():
                o = mlp(vg.TensorNode(np.asarray(x, dtype=dtype)))
            oval = o.value
        else:
            o = mlp(vg.TensorNode(np.asarray(x, dtype=dtype)))
            oval = o.value
            o.clear()
        predictions = np.argmax(oval, axis=1)
        accuracy = (predictions == y).sum() / y.shape[0]
        return [-float(oval[np.arange(len(y)), y].sum()), float(accuracy)]

    for _ in range(workload.warmup):
        run()
    return timed_repeats(run, workload.repeats)
