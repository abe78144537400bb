"""The contract: what an agent may change, how it is scored, and the limits of every run.

| file | holds |
| --- | --- |
| `model.py` | the pydantic model, one class per table (`[metric]`, `[budget]`, `[sandbox]`...) |
| `load.py` | reading a TOML file, applying flags, one-line errors; checks against the repo |
| `constraints.py` | secondary-metric rules (`p99_ms <= 400`, `tokens <= 1.1 * baseline`) |
| `metrics.py` | the metric channel: the lines an evaluator prints |
| `paths.py` | matching repo-relative paths against the contract's globs |

The `[agent]` and `[executor]` tables are unions whose members live beside their
backends (`agents/config.py`, `executors/config.py`).
"""
