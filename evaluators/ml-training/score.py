"""Sealed scorer for examples/ml-training: val_bpb on the held-out split.

Runs in its own container with the run stage's /results (read-only) and the
held-out text at /secret; the implementation is not here, so the forward pass is
this file's own, over the weights' fixed layout. Lower val_bpb is better.
"""

import sys

import numpy as np

w = np.load("/results/model.npz")
emb, w1, b1, w2, b2 = (w[k].astype(np.float64) for k in ("emb", "w1", "b1", "w2", "b2"))
context, activation = int(w["context"]), str(w["activation"])
width = emb.shape[1]
if emb.shape[0] != 256 or w1.shape != (context * width, b1.shape[0]) or w2.shape != (b1.shape[0], 256):
    print(f"bad weight shapes: emb {emb.shape}, w1 {w1.shape}, w2 {w2.shape} for context {context}")
    sys.exit(1)
if activation not in ("tanh", "relu"):
    print(f"unknown activation {activation!r}")
    sys.exit(1)
val = np.frombuffer(open("/secret/val.txt", "rb").read(), dtype=np.uint8)
nll = 0.0
positions = np.arange(context, len(val))
for chunk in np.array_split(positions, max(1, len(positions) // 4096)):
    x = np.stack([val[chunk - context + k] for k in range(context)], axis=1)
    pre = emb[x].reshape(len(chunk), -1) @ w1 + b1
    h = np.tanh(pre) if activation == "tanh" else np.maximum(pre, 0)
    logits = h @ w2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    nll -= logp[np.arange(len(chunk)), val[chunk]].sum()
print(f"val_bpb: {nll / len(positions) / np.log(2):.6f}")
