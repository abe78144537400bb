"""What tokens cost: USD per million, by model, for the agents and the gateway's services.

A leaf module (it imports nothing of the package but the pydantic base): the contract's
services (contract/services.py) and the agents' configuration (config.py) both read it,
and the services import nothing else of the agents (the configuration names them, never
the other way). Model names of the two vendors do not collide, so one table serves a
Messages API and an OpenAI-compatible one alike.
"""

from __future__ import annotations

from orchestrator.schema import Model as _Model


class Price(_Model):
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


ANTHROPIC_PRICES: dict[str, Price] = {  # Anthropic's list prices, 5-minute cache writes (2026-11)
    "claude-sonnet-5-5": Price(input=2, output=10, cache_write=2.5, cache_read=0.2),
    "claude-sonnet-5": Price(input=2, output=10, cache_write=2.5, cache_read=0.2),
    "claude-sonnet-4-6": Price(input=3, output=15, cache_write=3.75, cache_read=0.3),
    "claude-sonnet-4-5": Price(input=3, output=15, cache_write=3.75, cache_read=0.3),
    "claude-fable-5-1": Price(input=10, output=50, cache_write=12.5, cache_read=0.25),
    "claude-opus-4-5": Price(input=5, output=25, cache_write=6.25, cache_read=0.5),
    "claude-haiku-4-5": Price(input=1, output=5, cache_write=1.25, cache_read=0.1),
}

OPENAI_PRICES: dict[str, Price] = {  # OpenAI's standard-tier list prices (2025-08); no cache
    # write surcharge (a write is an input token), cached input at `cache_read`
    "gpt-5": Price(input=1.25, output=10, cache_write=1.25, cache_read=0.125),
    "gpt-5-codex": Price(input=1.25, output=10, cache_write=1.25, cache_read=0.125),
    "gpt-5-mini": Price(input=0.25, output=2, cache_write=0.25, cache_read=0.025),
    "gpt-5-nano": Price(input=0.05, output=0.4, cache_write=0.05, cache_read=0.005),
    "gpt-4.1": Price(input=2, output=8, cache_write=2, cache_read=0.5),
    "gpt-4.1-mini": Price(input=0.4, output=1.6, cache_write=0.4, cache_read=0.1),
    "o4-mini": Price(input=1.1, output=4.4, cache_write=1.1, cache_read=0.275),
}

DEFAULT_PRICES: dict[str, Price] = {**ANTHROPIC_PRICES, **OPENAI_PRICES}
"""Every model priced by default; one not listed has an unknown cost (counted as 0 USD)."""
