"""State backends shared by stages: rate-limit, breaker, throttle, route and spend state, and
cache stores (memory, SQLite, Redis), all registered through the ``register_stores`` hook.

``SharedStateOptions`` is the public base of a stateful stage's ``Options`` (``store``,
``share``, ``store_url``, ``store_url_env``, ``on_unavailable``, ``store_timeout_s``).
"""

from ._shared import SharedStateOptions

__all__ = ["SharedStateOptions"]
