"""The gateway: a run stage's only way out of its network-none container.

The contract names services (`[[sandbox.services]]`, orchestrator/contract/services.py).
For each run stage the host serves every service on a unix socket of its own, in a
folder mounted into the container; the harness's forwarder inside exposes each at
`AUTORESEARCH_SERVICE_<NAME>_URL` on loopback. The gateway lets through only the
service's methods and exact paths, adds its headers from the host's environment
(the key never enters the container, and is cut out of every answer), drops any
credential or steering header the container sent, enforces the per-run caps (past
one: HTTP 429 with a JSON error) and the run's bounds on this process (limits.py),
and counts what went through. Its figures are trusted metrics (`gateway.<name>.<figure>`).
"""
