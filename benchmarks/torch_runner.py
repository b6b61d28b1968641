"""
The workloads in PyTorch's CPU eager mode, written as a PyTorch user would (addmm with the bias, as
nn.Linear does; log_softmax; nll_loss summed; SGD by hand under no_grad), computing what the course code
computes from the same arrays: same weights (w (out, in), b (1, out)), same batches, same summed loss.

Row 'torch' sets requires_grad=True on the input batch, so that, like vgrad and vugrad, it computes the
gradient over the input too; row 'torch_noinput' does not. Returns what course_runner's functions return.
"""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.measure import timed_repeats


def _params(weights):
    return [torch.from_numpy(w.copy()).requires_grad_() for w in weights]


def _forward(params, x):
    w1, b1, w2, b2 = params
    hidden = torch.sigmoid(torch.addmm(b1, x, w1.t()))
    return F.log_softmax(torch.addmm(b2, hidden, w2.t()), dim=1)


def train(workload, row, inputs):
    x, y = inputs['x'], torch.from_numpy(inputs['y'])
    dtype, b, lr = np.dtype(workload.dtype), workload.batch, workload.lr
    params = _params(inputs['weights'])

    def epoch(rows):
        losses = []
        for fr in range(0, rows, b):
            to = min(fr + b, rows)
            batch = torch.from_numpy(np.asarray(x[fr:to], dtype=dtype))
            if row.input_grad:
                batch.requires_grad_()

            loss = F.nll_loss(_forward(params, batch), y[fr:to], reduction='sum')
            losses.append(loss.item())

            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad  # as the course does: lr * grad first, then subtract
                    p.grad = None     # what optimizer.zero_grad() does
        return losses

    def reset():
        with torch.no_grad():
            for p, w in zip(params, inputs['weights']):
                p.copy_(torch.from_numpy(w))

    epoch(min(workload.warmup * b, workload.timed_rows))
    return timed_repeats(lambda: epoch(workload.timed_rows), workload.repeats, reset=reset)


def overhead(workload, row, inputs):
    x = torch.from_numpy(inputs['x'].copy()).requires_grad_(row.input_grad)
    w = torch.from_numpy(inputs['w'].copy()).requires_grad_()

    def passes(n):
        value = None
        for _ in range(n):
            h = x
            for _ in range(workload.chain):
                h = torch.sigmoid(torch.add(h, w))
                h = torch.matmul(h, w)
            loss = torch.sum(h)
            value = loss.item()
            loss.backward()
            w.grad = x.grad = None
        return [value]

    passes(workload.warmup)
    return timed_repeats(lambda: passes(workload.iterations), workload.repeats)


def validate(workload, row, inputs):
    x, y, dtype = inputs['x'], inputs['y'], np.dtype(workload.dtype)
    params = _params(inputs['weights'])

    def run():
        with torch.no_grad() if row.no_grad else contextlib.nullcontext():
            out = _forward(params, torch.from_numpy(np.asarray(x, dtype=dtype))).detach().numpy()
        predictions = np.argmax(out, axis=1)
        accuracy = (predictions == y).sum() / y.shape[0]
        return [-float(out[np.arange(len(y)), y].sum()), float(accuracy)]

    for _ in range(workload.warmup):
        run()
    return timed_repeats(run, workload.repeats)
