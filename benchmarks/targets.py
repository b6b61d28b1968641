"""
The targets, as ratios measured in one run (>1 = vgrad better):

    W1 >= 5x vugrad and >= 1x PyTorch;  W2 >= 2.5x vugrad and >= 1x PyTorch, matmuls >= 70% of GEMM peak;
    W3 >= 1x PyTorch float32;  W4 >= 3x vugrad and >= 1x PyTorch;  W2 peak RSS <= vugrad's.
    W5 (the MNIST MLP op by op, float64), in a fresh and in a churned process alike: a step within 1.3x the
    time of its matrix products at NumPy's own speed on these shapes, and >= 1.25x vugrad in its better
    process state.

    CNN (the blitz CNN and its variants, a float32 training step): >= 1.5x PyTorch at batch 4 and >= 1x at
    batch 64, on every row.

PyTorch here is the equal-work row (gradient over the input computed).
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    workload: str
    metric: str        # 'speed': time(versus) / time(vgrad); 'gemm': vgrad's share of GEMM peak;
                       # 'rss': peak RSS(versus) / peak RSS(vgrad); 'floor': the time of the epoch's matrix
                       # products at NumPy's speed on these shapes / time(row); 'states': time(versus, in its
                       # faster process state) / time(vgrad, in its slower one)
    versus: str        # a row key ('' for 'gemm'; for 'floor' the vgrad row judged)
    at_least: float

    @property
    def text(self):
        if self.metric == 'speed':
            return f'≥ {self.at_least:g}× {_NAMES[self.versus]}'
        if self.metric == 'gemm':
            return f'matmuls ≥ {self.at_least:.0%} of GEMM peak'
        if self.metric == 'floor':
            state = 'churned process' if self.versus.endswith('_churned') else 'fresh process'
            return f'≤ {1 / self.at_least:.2g}× its matmuls at NumPy\'s speed ({state})'
        if self.metric == 'states':
            return f'≥ {self.at_least:g}× {_NAMES[self.versus]} in its better process state (both states)'
        return f'peak RSS ≤ {_NAMES[self.versus]}\'s'


_NAMES = {'vugrad': 'vugrad', 'torch': 'PyTorch'}

TARGETS = (
    Target('W1', 'speed', 'vugrad', 5.0),
    Target('W1', 'speed', 'torch', 1.0),
    Target('W2', 'speed', 'vugrad', 2.5),
    Target('W2', 'speed', 'torch', 1.0),
    Target('W2', 'gemm', '', 0.70),
    Target('W3', 'speed', 'torch', 1.0),
    Target('W4', 'speed', 'vugrad', 3.0),
    Target('W4', 'speed', 'torch', 1.0),
    Target('W2', 'rss', 'vugrad', 1.0),
    Target('W5', 'floor', 'vgrad', 1 / 1.3),
    Target('W5', 'floor', 'vgrad_churned', 1 / 1.3),
    Target('W5', 'states', 'vugrad', 1.25),
)

# The CNN rows (benchmarks/cnn.py): batch size -> the least PyTorch wall time ÷ vgrad's, on every row.
CNN_TARGETS = {4: 1.5, 64: 1.0}
