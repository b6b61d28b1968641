"""One training step of the PyTorch 60-minute-blitz CNN (CIFAR-shaped 3x32x32 inputs, float32, SGD with
momentum) in vgrad and in PyTorch (when installed), at batch 4 (the tutorial's) and 64.

    python -m benchmarks.cnn [--repeats 5] [--batches 4 64]

A step is forward, cross-entropy loss, backward and the optimizer's update. Each figure is the best of
`repeats` runs of many steps (the machine is shared and noisy: the best run is the least disturbed one);
the ratio is PyTorch's time over vgrad's, so above 1 means vgrad is faster.

vgrad's matrix products go through NumPy's OpenBLAS, which splits even small products over its threads; on
a 2-core machine where other processes run, those threads wait for each other and a step can take 10-20x
longer. When threadpoolctl is installed, vgrad is also timed with OpenBLAS limited to one thread (the
"1 BLAS thread" column), which shows how much of the time that costs.
"""
import argparse
import time

import numpy as np

import vgrad as vg


def vgrad_step_fn(batch, rng):
    net = vg.Sequential(vg.Conv2d(3, 6, 5), vg.relu, vg.MaxPool2d(2), vg.Conv2d(6, 16, 5), vg.relu, vg.MaxPool2d(2),
                        vg.Flatten(), vg.Linear(400, 120), vg.relu, vg.Linear(120, 84), vg.relu, vg.Linear(84, 10))
    vg.to_dtype(net, np.float32)
    opt = vg.SGD(net.parameters(), lr=0.001, momentum=0.9)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, batch)

    def step():
        loss = vg.cross_entropy(net(vg.TensorNode(x, requires_grad=False)), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss.clear()
    return step


def torch_step_fn(batch, rng):
    import torch
    import torch.nn as tnn
    import torch.nn.functional as F

    class Net(tnn.Module):  # the tutorial's network
        def __init__(self):
            super().__init__()
            self.conv1, self.pool, self.conv2 = tnn.Conv2d(3, 6, 5), tnn.MaxPool2d(2, 2), tnn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = tnn.Linear(400, 120), tnn.Linear(120, 84), tnn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = torch.flatten(x, 1)
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    x = torch.as_tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    y = torch.as_tensor(rng.integers(0, 10, batch))

    def step():
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return step


def best_time(step, steps, repeats):
    for _ in range(max(3, steps // 10)):  # warm up: buffers, caches, BLAS threads
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - start) / steps)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--batches', type=int, nargs='+', default=[4, 64])
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        torch = None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    print(f'blitz CNN training step, float32, best of {args.repeats}'
          + (f'; torch {torch.__version__}, {torch.get_num_threads()} threads' if torch else '; torch not installed'))
    for batch in args.batches:
        steps = max(10, 800 // batch)
        rng = np.random.default_rng(0)
        t_vg = best_time(vgrad_step_fn(batch, rng), steps, args.repeats)
        line = f'batch {batch:4d}: vgrad {t_vg * 1e3:7.3f} ms'
        t_one = None
        if threadpool_limits is not None:
            with threadpool_limits(limits=1, user_api='blas'):
                t_one = best_time(vgrad_step_fn(batch, rng), steps, args.repeats)
            line += f'   vgrad, 1 BLAS thread {t_one * 1e3:7.3f} ms'
        if torch is not None:
            t_pt = best_time(torch_step_fn(batch, rng), steps, args.repeats)
            line += f'   torch {t_pt * 1e3:7.3f} ms   speed vs torch {t_pt / t_vg:5.2f}x'
            if t_one is not None:
                line += f' ({t_pt / t_one:5.2f}x with 1 BLAS thread)'
        print(line, flush=True)


if __name__ == '__main__':
    main()
