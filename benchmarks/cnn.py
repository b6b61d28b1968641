"""One training step of the PyTorch 60-minute-blitz CNN (CIFAR-shaped 3x32x32 inputs, float32) and of its
variants (a third conv layer, batch norm, dropout, a residual block; SGD with momentum and Adam) in vgrad and
in PyTorch (when installed), with the same weights and batch, at batch 4 (the tutorial's) and 64.

    python -m benchmarks.cnn [--repeats 5] [--batches 4 64] [--rows plain adam ...] [--threads N]
    OMP_NUM_THREADS=1 python -m benchmarks.cnn --layers --threads 1     # per-layer CPU time, one thread each

A step is forward, cross-entropy loss, backward and the optimizer's update. Each figure is the best of
`repeats` runs of many steps (the machine is shared and noisy: the best run is the least disturbed one), and
the two frameworks' runs alternate, so that a disturbance lasting seconds reaches both; the ratio is PyTorch's wall time over vgrad's, so above 1 means vgrad is faster. CPU time is printed beside
it: on a busy machine it says more about the kernels than the wall time does.
"""
import argparse
import json
import time

import numpy as np

import vgrad as vg


# The networks, as layer lists both frameworks are built from (the same weights in each): the blitz CNN and
# the variants a course report tries. ('conv', in, out, k, padding), ('pool',) is a 2x2 max-pool, ('res', c) a
# residual block x + conv(relu(conv(x))) of two 3x3 convolutions with padding 1 followed by a ReLU.
BLITZ_HEAD = [('conv', 3, 6, 5, 0), ('relu',), ('pool',), ('conv', 6, 16, 5, 0), ('relu',)]
BLITZ_TAIL = [('flatten',), ('linear', 400, 120), ('relu',), ('linear', 120, 84), ('relu',), ('linear', 84, 10)]
NETWORKS = {
    'plain': BLITZ_HEAD + [('pool',)] + BLITZ_TAIL,
    'conv3': BLITZ_HEAD + [('conv', 16, 16, 3, 1), ('relu',), ('pool',)] + BLITZ_TAIL,
    'batchnorm': [('conv', 3, 6, 5, 0), ('bn', 6), ('relu',), ('pool',), ('conv', 6, 16, 5, 0), ('bn', 16), ('relu',),
                  ('pool',)] + BLITZ_TAIL,
    'dropout': BLITZ_HEAD + [('pool',), ('flatten',), ('linear', 400, 120), ('relu',), ('dropout', 0.5),
                             ('linear', 120, 84), ('relu',), ('dropout', 0.5), ('linear', 84, 10)],
    'residual': BLITZ_HEAD + [('res', 16), ('pool',)] + BLITZ_TAIL,
}
# (row name, network, optimizer)
ROWS = [('plain, SGD momentum', 'plain', 'sgd'), ('plain, Adam', 'plain', 'adam'),
        ('third conv layer', 'conv3', 'sgd'), ('batch norm', 'batchnorm', 'sgd'), ('dropout', 'dropout', 'sgd'),
        ('residual block', 'residual', 'sgd')]


def torch_net(layers, seed):
    """The PyTorch module of a layer list, initialised by PyTorch from `seed`."""
    import torch
    import torch.nn as tnn

    class Residual(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.a, self.b = tnn.Conv2d(c, c, 3, padding=1), tnn.Conv2d(c, c, 3, padding=1)

        def forward(self, x):
            return torch.relu(x + self.b(torch.relu(self.a(x))))

    torch.manual_seed(seed)
    make = {'conv': lambda i, o, k, p: tnn.Conv2d(i, o, k, padding=p), 'relu': tnn.ReLU,
            'pool': lambda: tnn.MaxPool2d(2), 'bn': tnn.BatchNorm2d, 'dropout': tnn.Dropout,
            'flatten': tnn.Flatten, 'linear': tnn.Linear, 'res': Residual}
    return tnn.Sequential(*(make[kind](*spec) for kind, *spec in layers))


def vgrad_net(layers, tnet):
    """The vgrad network of a layer list, with the weights of its PyTorch twin tnet, in float32."""
    def arr(t):
        return t.detach().numpy().astype(np.float32)

    def conv(tm, padding):
        m = vg.Conv2d(tm.in_channels, tm.out_channels, tm.kernel_size, padding=padding)
        m.w.value, m.b.value = arr(tm.weight), arr(tm.bias)
        return m

    class Residual(vg.Module):
        def __init__(self, tm):
            super().__init__()
            self.a, self.b = conv(tm.a, 1), conv(tm.b, 1)

        def forward(self, x):
            return vg.relu(x + self.b(vg.relu(self.a(x))))

    out = []
    for (kind, *spec), tm in zip(layers, tnet):
        if kind == 'conv':
            out.append(conv(tm, spec[3]))
        elif kind == 'linear':
            m = vg.Linear(*spec)
            m.w.value, m.b.value = arr(tm.weight), arr(tm.bias)[None, :]
            out.append(m)
        elif kind == 'bn':
            out.append(vg.BatchNorm2d(*spec))
        else:
            out.append({'relu': lambda: vg.relu, 'pool': lambda: vg.MaxPool2d(2), 'dropout': lambda: vg.Dropout(*spec),
                        'flatten': vg.Flatten, 'res': lambda: Residual(tm)}[kind]())
    return vg.to_dtype(vg.Sequential(*out), np.float32)


def batch(size, rng):
    return rng.standard_normal((size, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, size)


def vgrad_step_fn(batch_size, rng, network='plain', optimizer='sgd'):
    layers = NETWORKS[network]
    net = vgrad_net(layers, torch_net(layers, 0))
    params = net.parameters()
    opt = vg.SGD(params, lr=0.001, momentum=0.9) if optimizer == 'sgd' else vg.Adam(params, lr=0.001)
    x, y = batch(batch_size, rng)

    def step():
        loss = vg.cross_entropy(net(vg.TensorNode(x, requires_grad=False)), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss.clear()
    return step


def torch_step_fn(batch_size, rng, network='plain', optimizer='sgd'):
    import torch
    import torch.nn.functional as F
    net = torch_net(NETWORKS[network], 0)
    params = net.parameters()
    opt = torch.optim.SGD(params, lr=0.001, momentum=0.9) if optimizer == 'sgd' else torch.optim.Adam(params, lr=0.001)
    x, y = (torch.as_tensor(v) for v in batch(batch_size, rng))

    def step():
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return step


def best_times(step_fns, steps, repeats):
    """For each of step_fns, (wall, CPU) seconds per step of its run with the least wall time. The functions'
    runs alternate (a run of each, `repeats` times), so that a slow spell of the machine falls on all of them
    rather than on whichever was being timed."""
    for step in step_fns:
        for _ in range(max(3, steps // 10)):  # warm up: buffers, caches, BLAS threads
            step()
    best = [None] * len(step_fns)
    for _ in range(repeats):
        for i, step in enumerate(step_fns):
            for _ in range(max(2, steps // 4)):  # untimed: the other framework's idle threads stop spinning
                step()
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step()
            run = ((time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps)
            best[i] = run if best[i] is None or run[0] < best[i][0] else best[i]
    return best


def layer_fns(batch_size, rng):
    """{layer: (vgrad forward+backward, torch forward+backward)} for the blitz CNN's convolutions and
    pools at their own input sizes: the per-layer figures of kernel quality."""
    import torch
    import torch.nn.functional as F
    from vgrad.nn_ops import Convolution, MaxPooling
    out = {}
    for name, (c, o, hw) in {'conv1 3->6 5x5 on 32x32': (3, 6, 32), 'conv2 6->16 5x5 on 14x14': (6, 16, 14)}.items():
        x = rng.standard_normal((batch_size, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((o, c, 5, 5)) * 0.1).astype(np.float32)
        b = np.zeros(o, np.float32)
        go = np.ones((batch_size, o, hw - 4, hw - 4), np.float32)

        def ours(x=x, w=w, b=b, go=go):
            ctx = {}
            Convolution.forward(ctx, x, w, b)
            Convolution.backward(ctx, go)

        xt, wt, bt = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
        got = torch.tensor(go)

        def theirs(xt=xt, wt=wt, bt=bt, got=got):
            torch.autograd.grad(F.conv2d(xt, wt, bt), (xt, wt, bt), got)
        out[name] = (ours, theirs)
    for name, (c, hw) in {'pool1 6x28x28': (6, 28), 'pool2 16x10x10': (16, 10)}.items():
        x = rng.standard_normal((batch_size, c, hw, hw)).astype(np.float32)
        go = np.ones((batch_size, c, hw // 2, hw // 2), np.float32)

        def ours(x=x, go=go):
            ctx = {}
            MaxPooling.forward(ctx, x, kernel_size=2)
            MaxPooling.backward(ctx, go)

        xt, got = torch.tensor(x, requires_grad=True), torch.tensor(go)

        def theirs(xt=xt, got=got):
            torch.autograd.grad(F.max_pool2d(xt, 2), (xt,), got)
        out[name] = (ours, theirs)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--batches', type=int, nargs='+', default=[4, 64])
    parser.add_argument('--rows', nargs='+', choices=[net for _, net, _ in ROWS] + ['adam'],
                        help='only these rows (networks; adam: the plain network with Adam)')
    parser.add_argument('--layers', action='store_true',
                        help='per-layer forward + backward CPU times of the convolutions and pools instead')
    parser.add_argument('--json', metavar='FILE', help='also write the rows to FILE (python -m benchmarks does)')
    parser.add_argument('--threads', type=int,
                        help='vgrad\'s and PyTorch\'s threads (vgrad._C.num_threads, torch.set_num_threads); '
                             'set OMP_NUM_THREADS too for the BLAS')
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        torch = None
    if args.threads:
        vg.set_num_threads(args.threads)
        if torch is not None:
            torch.set_num_threads(args.threads)
    head = (f'; torch {torch.__version__}, {torch.get_num_threads()} threads' if torch else '; torch not installed')
    if args.layers:
        if torch is None:
            raise SystemExit('--layers compares with PyTorch, which is not installed')
        print(f'blitz CNN layers, float32, forward + backward, CPU ms per call (best of {args.repeats}); '
              f'vgrad {vg._C.num_threads(0)} threads{head}')
        for size in args.batches:
            for name, (ours, theirs) in layer_fns(size, np.random.default_rng(0)).items():
                calls = max(20, 4000 // size)
                (_, c_vg), (_, c_pt) = best_times([ours, theirs], calls, args.repeats)
                print(f'batch {size:4d} {name:26s} vgrad {c_vg * 1e3:8.3f}  torch {c_pt * 1e3:8.3f}  '
                      f'torch/vgrad {c_pt / c_vg:5.2f}x', flush=True)
        return
    print(f'CNN training step, float32, best of {args.repeats}; vgrad {vg._C.num_threads(0)} threads{head}')
    print('wall and CPU ms per step; ratio = torch wall / vgrad wall (> 1: vgrad faster)')
    rows = []
    for name, network, optimizer in ROWS:
        if args.rows and network not in args.rows and not (optimizer == 'adam' and 'adam' in args.rows):
            continue
        if args.rows and optimizer == 'adam' and 'adam' not in args.rows:
            continue
        for size in args.batches:
            row = measure_row(name, network, optimizer, size, args.repeats, torch is not None)
            rows.append(row)
            line = f"{name:20s} batch {size:4d}: vgrad {row['vgrad_wall'] * 1e3:7.3f} ms (CPU {row['vgrad_cpu'] * 1e3:7.3f})"
            if torch is not None:
                line += (f"   torch {row['torch_wall'] * 1e3:7.3f} ms (CPU {row['torch_cpu'] * 1e3:7.3f})   "
                         f"ratio {row['torch_wall'] / row['vgrad_wall']:5.2f}x")
            print(line, flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'threads': vg.get_num_threads(), 'torch': torch.__version__ if torch else None,
                       'torch_threads': torch.get_num_threads() if torch else None, 'repeats': args.repeats,
                       'rows': rows}, f, indent=1)


def measure_row(name, network, optimizer, size, repeats, with_torch):
    """One row at one batch size: best (wall, CPU) seconds per step of vgrad and, if installed, PyTorch."""
    steps = max(10, 800 // size)
    fns = [vgrad_step_fn(size, np.random.default_rng(0), network, optimizer)]
    if with_torch:
        fns.append(torch_step_fn(size, np.random.default_rng(0), network, optimizer))
    (t_vg, c_vg), *theirs = best_times(fns, steps, repeats)
    row = {'name': name, 'network': network, 'optimizer': optimizer, 'batch': size, 'steps': steps,
           'vgrad_wall': t_vg, 'vgrad_cpu': c_vg, 'torch_wall': None, 'torch_cpu': None}
    if theirs:
        row['torch_wall'], row['torch_cpu'] = theirs[0]
    return row

if __name__ == '__main__':
    main()
