"""autoresearch-orchestrator: an unattended propose → sandbox → score → keep loop.

Everything an agent writes is treated as untrusted code: it runs only inside a
throwaway, locked-down container, and only the exact commit it proposed can merge.
"""

__version__ = "0.1.0"
