"""A tiny byte-level language model in numpy: the implementation the agent may change.

The trusted evaluator owns the clock: it builds `Model(seed)`, calls `step(x, y)`
with batches of BATCH windows of CONTEXT bytes until the time budget is spent,
then saves `export()`. A sealed scorer computes val_bpb on held-out text this file
never sees, so the exported weights must follow the fixed layout in `export`.
"""

import numpy as np

CONTEXT = 3  # bytes of context per prediction
EMBED = 8  # embedding width per byte
HIDDEN = 32  # hidden units
LR = 0.05  # learning rate (plain SGD)
BATCH = 32  # windows per step
ACTIVATION = "tanh"  # tanh | relu


class Model:
    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.emb = rng.normal(0, 0.1, (256, EMBED))
        self.w1 = rng.normal(0, 1 / np.sqrt(CONTEXT * EMBED), (CONTEXT * EMBED, HIDDEN))
        self.b1 = np.zeros(HIDDEN)
        self.w2 = rng.normal(0, 1 / np.sqrt(HIDDEN), (HIDDEN, 256))
        self.b2 = np.zeros(256)

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        n = len(y)
        e = self.emb[x].reshape(n, -1)
        pre = e @ self.w1 + self.b1
        h = np.tanh(pre) if ACTIVATION == "tanh" else np.maximum(pre, 0)
        logits = h @ self.w2 + self.b2
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(n), y] + 1e-12).mean()
        d = p
        d[np.arange(n), y] -= 1
        d /= n
        gw2, gb2 = h.T @ d, d.sum(0)
        dh = d @ self.w2.T
        dpre = dh * (1 - h**2) if ACTIVATION == "tanh" else dh * (pre > 0)
        gw1, gb1 = e.T @ dpre, dpre.sum(0)
        de = (dpre @ self.w1.T).reshape(n, CONTEXT, EMBED)
        np.add.at(self.emb, x, -LR * de)
        for w, g in ((self.w1, gw1), (self.b1, gb1), (self.w2, gw2), (self.b2, gb2)):
            w -= LR * g
        return float(loss)

    def export(self) -> dict[str, np.ndarray]:
        return {"emb": self.emb, "w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": self.b2,
                "context": np.array(CONTEXT), "activation": np.array(ACTIVATION)}  # fmt: skip
