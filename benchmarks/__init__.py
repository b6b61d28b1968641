"""
vgrad's benchmark suite: vgrad against vugrad and PyTorch's CPU eager mode on the course's
workloads, each library in a process of its own, on the same data and initial weights.

    python -m benchmarks --vugrad DIR [--quick]      (or: python benchmarks/run.py ...)

Files: workloads.py (what is measured, sizes per mode), inputs.py (data and initial weights), run.py (the
command: runs the jobs), child.py (one job in its own process), course_runner.py / torch_runner.py /
peak.py (the work, per library), measure.py (timing, memory, threads), summary.py (medians, ratios,
agreement), targets.py (the targets), report.py and chart.py (docs/benchmarks.md and .png),
machine.py (CPU, versions, git state). cnn.py is a separate benchmark of a CNN training step
(`python -m benchmarks.cnn`), not part of this suite's run.
"""
