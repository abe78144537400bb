"""Settings of the item service (evaluators/config-under-load/service.py). Tune them."""

POOL_SIZE = 4  # requests computed at once; the rest wait for a slot
TIMEOUT_S = 1.0  # a request that waits longer than this for a slot gets 503
CACHE_TTL_S = 0.0  # how long a computed item is reused; 0 = no cache
BATCH_SIZE = 1  # items computed per backend call (the neighbours go into the cache)
