"""Message dicts users already have → neutral ``Message`` objects (part of the core).

``Chain.complete(messages)`` accepts llmchain's own dicts and OpenAI- or Anthropic-shaped ones
(``_inputs``: which shape a dict has, and the conversion); the readers of each provider's
shape are ``_from_openai`` and ``_from_anthropic``. The transports reuse those readers to
decode answers; writing a provider's request body stays in ``transports/_<name>_wire.py``.

Nothing is re-exported, so a transport importing one reader loads only that one.
"""
