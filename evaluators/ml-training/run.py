"""Trusted training harness for examples/ml-training (read-only in the sandbox).

It owns the clock: it feeds batches from the train split to the implementation's
Model until TRAIN_SECONDS have passed, then saves the weights to /results for the
sealed scorer. It never sees the held-out split.
"""

import os
import time
from pathlib import Path

import autoresearch_harness as harness
import numpy as np
from train import BATCH, CONTEXT, Model

seconds = float(os.environ.get("TRAIN_SECONDS", "60"))
seed = harness.seed()  # fresh each run; the candidate never sees it
data = np.frombuffer(Path("examples/ml-training/data/train.txt").read_bytes(), dtype=np.uint8)
rng = np.random.default_rng(seed)
model = Model(int(rng.integers(2**31)))  # its own seed, never the run's
start, steps, loss = time.monotonic(), 0, float("nan")
while time.monotonic() - start < seconds:
    idx = rng.integers(CONTEXT, len(data), size=BATCH)
    x = np.stack([data[idx - CONTEXT + k] for k in range(CONTEXT)], axis=1)
    loss = model.step(x, data[idx])
    steps += 1
np.savez("/results/model.npz", **model.export())
print(f"steps: {steps}")
print(f"train_loss: {loss:.4f}")
print(f"training_seconds: {time.monotonic() - start:.1f}")
