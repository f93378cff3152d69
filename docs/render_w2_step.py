"""Regenerate docs/w2_step.svg, the README's picture of W2's training step.

    .venv/bin/python docs/render_w2_step.py        (needs Graphviz's `dot`)

The MLP 784-256-256-10 with ReLU and softmax cross-entropy, one SGD step:
forward, backward and update nodes in their colours, fused kernels as boxes.
"""
import pathlib

import graphc as gc
from graphc.benchmarks.workloads import WORKLOADS

workload = WORKLOADS["W2"]
params, batch = workload.make("float32", seed=0, size="tiny")
step = gc.compile_step(workload.loss_fn, gc.optim.SGD(lr=workload.lr))
optimized = step.inspect(params, *batch).optimized
out = pathlib.Path(__file__).with_name("w2_step.svg")
optimized.render(out)
print(f"{out}: {len(optimized)} nodes, {len(optimized.groups)} kernels")
