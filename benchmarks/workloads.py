"""
What the suite measures: the rows (a library and its options), the workloads and their sizes in each mode,
and the matrix-product FLOPs a training step does. Plain data shared by the parent and the child processes
(it travels to a child as JSON), so nothing here imports a library under test.
"""
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Row:
    """One line of a workload's results: a library, and the options it runs with."""
    key: str
    label: str
    library: str               # 'vgrad', 'vugrad' or 'torch': which runner the child process uses
    input_grad: bool = True    # compute the gradient over the input batch (vugrad always does)
    no_grad: bool = False      # forward only, under vg.no_grad() / torch.no_grad()
    churned: bool = False      # the process's allocator is churned first (benchmarks.child.churn_allocator)


ROWS = {row.key: row for row in [
    Row('vgrad', 'vgrad', 'vgrad'),
    Row('vugrad', 'vugrad', 'vugrad'),
    Row('torch', 'PyTorch', 'torch'),
    Row('torch_noinput', 'PyTorch, input without grad', 'torch', input_grad=False),
    # The opt-outs PyTorch users know.
    Row('vgrad_noinput', 'vgrad, input requires_grad=False', 'vgrad', input_grad=False),
    Row('vgrad_nograd', 'vgrad, with vg.no_grad()', 'vgrad', input_grad=False, no_grad=True),
    Row('torch_nograd', 'PyTorch, with torch.no_grad()', 'torch', input_grad=False, no_grad=True),
    Row('numpy', 'NumPy', 'numpy'),  # the GEMM peak
    # The same, in a process whose allocator was churned first: large arrays allocated and freed before
    # training, as a notebook or a script that loaded and transformed its data has done. glibc then keeps or
    # returns memory differently, and a step's time can depend on it (page faults).
    Row('vgrad_churned', 'vgrad, churned process', 'vgrad', churned=True),
    Row('vugrad_churned', 'vugrad, churned process', 'vugrad', churned=True),
    Row('torch_churned', 'PyTorch, churned process', 'torch', churned=True),
]}

TRAIN_ROWS = ('vgrad', 'vugrad', 'torch', 'torch_noinput', 'vgrad_noinput')
# The MNIST MLP in both process states (W2, and op by op W5)
STATE_ROWS = ('vgrad', 'vgrad_churned', 'vugrad', 'vugrad_churned', 'torch', 'torch_churned')
OVERHEAD_ROWS = ('vgrad', 'vugrad', 'torch', 'torch_noinput')
VALIDATE_ROWS = ('vgrad', 'vgrad_nograd', 'vugrad', 'torch_nograd')


@dataclass(frozen=True)
class Workload:
    key: str
    kind: str                  # 'train', 'overhead', 'validate' or 'peak'
    title: str
    rows: tuple = ()
    unit: str = 's'            # of the reported time: 's' per epoch, 'ms' per pass, 'us' per op
    dtype: str = 'float64'
    data: str = ''             # 'synth' or 'mnist'
    sizes: tuple = ()          # (input, hidden, output) of the course MLP
    batch: int = 128
    lr: float = 0.0
    epoch_rows: int = 0        # rows in a full epoch (or validation set): what the time is scaled to
    timed_rows: int = 0        # rows processed per repeat (fewer in quick mode)
    chain: int = 0             # overhead: number of (Add, Sigmoid, MatrixMultiply) blocks before the Sum
    iterations: int = 0        # overhead: forward+backward passes per repeat
    peak_size: int = 0         # peak: side of the square matrices
    unfused: bool = False      # train: vgrad builds the course's graphs op by op (vg.unfused()), as a student
                               # who writes BatchMM + Expand + Add gets them; vugrad always does
    repeats: int = 3
    warmup: int = 2            # untimed steps before the first repeat

    def to_json(self):
        return asdict(self)

    @staticmethod
    def from_json(d):
        return Workload(**{**d, 'rows': tuple(d['rows']), 'sizes': tuple(d['sizes'])})

    @property
    def ops_per_iteration(self):
        """Overhead workload: ops in one forward pass (3 per block, and the Sum)."""
        return 3 * self.chain + 1


MNIST_TRAIN, MNIST_VAL = 55_000, 5_000   # vgrad.load_fashion_mnist(final=False), as load_mnist splits MNIST
SYNTH_TRAIN = 60_000
MNIST_SIZES = (784, 4 * 784, 10)          # the course MLP on MNIST: hidden_mult=4
SYNTH_SIZES = (2, 8, 2)

# Per mode: how much each repeat times, and how many repeats. The machine is shared and noisy, so rather
# than a few long repeats the suite takes many short ones and reports their median, which a burst of
# someone else's work cannot move: 'full' times W2/W3 in 11 repeats of 40 batches each (about one epoch in
# all per row, scaled to an epoch; whole epochs for every row would take most of an hour), W1 in whole
# epochs. 'quick' takes a minute or two; 'tiny' is for the smoke test (machinery only, times meaningless).
MODES = {
    'full':  dict(repeats=11, w1_rows=SYNTH_TRAIN, w2_rows=40 * 128, val_rows=MNIST_VAL, val_repeats=7,
                  iterations=400, chain=8, peak_size=2048, peak_repeats=5),
    'quick': dict(repeats=7, w1_rows=SYNTH_TRAIN // 4, w2_rows=10 * 128, val_rows=1_000, val_repeats=5,
                  iterations=100, chain=8, peak_size=1536, peak_repeats=3),
    'tiny':  dict(repeats=1, w1_rows=512, w2_rows=256, val_rows=64, val_repeats=1,
                  iterations=3, chain=2, peak_size=256, peak_repeats=1),
}


def make_workloads(mode='full', repeats=None, w2_fraction=None):
    """
    The workloads of a run. `repeats` overrides the mode's repeats for all workloads; `w2_fraction` the
    fraction of an epoch that each W2/W3 repeat times.
    """
    m = MODES[mode]
    tiny = mode == 'tiny'
    w2_rows = round(w2_fraction * MNIST_TRAIN) if w2_fraction else m['w2_rows']
    w2_rows = max(128, min(MNIST_TRAIN, w2_rows))
    w1 = Workload('W1', 'train', 'W1 synth: MLP 2→8→2, batch 128, float64', TRAIN_ROWS,
                  data='synth', sizes=SYNTH_SIZES, lr=0.01,
                  epoch_rows=m['w1_rows'] if tiny else SYNTH_TRAIN, timed_rows=m['w1_rows'],
                  repeats=repeats or m['repeats'])
    w2 = Workload('W2', 'train', 'W2 mnist: MLP 784→3136→10, batch 128, float64', TRAIN_ROWS + STATE_ROWS[1::2],
                  data='mnist', sizes=MNIST_SIZES, lr=1e-4,
                  epoch_rows=w2_rows if tiny else MNIST_TRAIN, timed_rows=w2_rows, repeats=repeats or m['repeats'])
    w3 = replace(w2, key='W3', title='W3 mnist float32: W2 in float32', dtype='float32', rows=TRAIN_ROWS)
    w5 = replace(w2, key='W5', title='W5 mnist op by op: W2 written as students write it (BatchMM, Expand, Add)',
                 rows=STATE_ROWS, unfused=True)
    w4 = Workload('W4', 'overhead', f'W4 overhead: 2×2 chain of Add, Sigmoid, MatrixMultiply ×{m["chain"]}, Sum',
                  OVERHEAD_ROWS, unit='us', chain=m['chain'], iterations=m['iterations'],
                  repeats=repeats or m['repeats'], warmup=1 if tiny else 20)
    val = Workload('V2', 'validate', 'Validation pass at W2 shape (forward only, float64)', VALIDATE_ROWS,
                   unit='ms', data='mnist', sizes=MNIST_SIZES, epoch_rows=m['val_rows'],
                   timed_rows=m['val_rows'], batch=m['val_rows'], repeats=repeats or m['val_repeats'], warmup=1)
    peak = Workload('GEMM', 'peak', 'GEMM peak: NumPy matmul of square matrices', ('numpy',),
                    unit='GFLOP/s', peak_size=m['peak_size'], sizes=MNIST_SIZES, batch=128,
                    repeats=repeats or m['peak_repeats'], warmup=1)
    return [w1, w2, w3, w4, val, peak, w5]


def matmul_flops_per_row(sizes, input_grad=True, backward=True):
    """
    FLOPs of the matrix products for one input row of the course MLP: per layer, the forward product and,
    in backward, the gradient over the weights and over the layer's input (2 FLOPs per multiply-add). The
    first layer's input gradient is the input batch's, computed only with `input_grad`.
    """
    n_in, n_hidden, n_out = sizes
    layer1, layer2 = 2 * n_in * n_hidden, 2 * n_hidden * n_out
    if not backward:
        return layer1 + layer2
    return layer1 * (3 if input_grad else 2) + layer2 * 3
