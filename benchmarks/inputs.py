"""
The inputs every library gets: the data and the initial weights. The parent process makes them once and
saves them as .npy files; each child loads them, so all libraries start from identical arrays and do
identical work. Only NumPy is needed to load them (a vugrad child never imports vgrad).
"""
import os

import numpy as np

N_PIXELS, N_CLASSES = 784, 10


def _mlp_file(sizes):
    return 'mlp_' + '-'.join(str(s) for s in sizes) + '.npz'


def course_mlp_weights(sizes, seed):
    """
    Initial weights of the course MLP, drawn as vugrad's Linear draws them after np.random.seed(seed):
    per layer w (out, in) Glorot-scaled normals and b (1, out) zeros. Returned as [w1, b1, w2, b2], the
    order of the course MLP's parameters().
    """
    rs = np.random.RandomState(seed)
    n_in, n_hidden, n_out = sizes
    weights = []
    for fan_in, fan_out in ((n_in, n_hidden), (n_hidden, n_out)):
        glorot_std = np.sqrt(2.0 / (fan_in + fan_out))
        weights += [rs.randn(fan_out, fan_in) * glorot_std, np.zeros((1, fan_out))]
    return weights


def _mnist_arrays(rows, val_rows, source, seed):
    """Fashion-MNIST's first rows (uint8 pixels, int64 labels), or random data of that shape."""
    if source != 'random':
        try:
            from vgrad.data import load_fashion_mnist
            (x, y), (xval, yval), _ = load_fashion_mnist(final=False, flatten=True)
            return (x[:rows], y[:rows].astype(np.int64), xval[:val_rows], yval[:val_rows].astype(np.int64),
                    'Fashion-MNIST (vgrad.load_fashion_mnist)')
        except (OSError, ValueError) as e:  # not installed here, or unreadable
            if source == 'fashion':
                raise
            reason = f'random uint8 pixels (Fashion-MNIST unavailable: {e})'
    else:
        reason = 'random uint8 pixels (--data random)'
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (rows, N_PIXELS), dtype=np.uint8), rng.integers(0, N_CLASSES, rows),
            rng.integers(0, 256, (val_rows, N_PIXELS), dtype=np.uint8), rng.integers(0, N_CLASSES, val_rows),
            reason)


def prepare(directory, workloads, seed=0, source='auto'):
    """
    Writes the inputs the workloads need into `directory`; returns a dict describing them for the report.
    `source` for the MNIST-shaped data: 'auto' (Fashion-MNIST if installed, else random), 'fashion' or
    'random'.
    """
    info = {'seed': seed}
    save = lambda name, array: np.save(os.path.join(directory, name), array)  # noqa: E731
    train = [w for w in workloads if w.kind in ('train', 'validate')]

    synth_rows = max([w.timed_rows for w in train if w.data == 'synth'], default=0)
    if synth_rows:
        from vgrad.data import load_synth  # vugrad's generator, the same draws from np.random
        (x, y), _, _ = load_synth(num_train=synth_rows, num_val=0, seed=seed)
        save('synth_x.npy', x)
        save('synth_y.npy', y.astype(np.int64))
        info['synth'] = f'vgrad.load_synth(seed={seed}), {synth_rows} rows'

    mnist_rows = max([w.timed_rows for w in train if w.data == 'mnist' and w.kind == 'train'], default=0)
    val_rows = max([w.timed_rows for w in train if w.data == 'mnist' and w.kind == 'validate'], default=0)
    if mnist_rows or val_rows:
        x, y, xval, yval, info['mnist'] = _mnist_arrays(max(mnist_rows, 1), max(val_rows, 1), source, seed)
        for name, array in (('mnist_x', x), ('mnist_y', y), ('mnistval_x', xval), ('mnistval_y', yval)):
            save(name + '.npy', array)

    for sizes in {w.sizes for w in train}:
        np.savez(os.path.join(directory, _mlp_file(sizes)), *course_mlp_weights(sizes, seed))

    rs = np.random.RandomState(seed)
    save('chain_x.npy', rs.randn(2, 2))
    save('chain_w.npy', rs.randn(2, 2))
    return info


def load(directory, workload):
    """
    A child's inputs for a workload, in its dtype: x (uint8 images stay uint8 and are converted per batch,
    as a course script would get them), y, and the weights [w1, b1, w2, b2] (or x, w for the overhead chain).
    """
    path = lambda name: os.path.join(directory, name)  # noqa: E731
    dtype = np.dtype(workload.dtype)
    if workload.kind == 'overhead':
        return {'x': np.load(path('chain_x.npy')).astype(dtype), 'w': np.load(path('chain_w.npy')).astype(dtype)}
    prefix = workload.data + ('val' if workload.kind == 'validate' else '')
    x = np.load(path(prefix + '_x.npy'))[:workload.timed_rows]
    y = np.load(path(prefix + '_y.npy'))[:workload.timed_rows]
    with np.load(path(_mlp_file(workload.sizes))) as f:
        weights = [f[f'arr_{i}'].astype(dtype) for i in range(4)]
    return {'x': x, 'y': y, 'weights': weights}
