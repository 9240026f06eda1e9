"""The redact stage obeys llmchain's middleware contract."""

from __future__ import annotations

from llmchain_redact import RedactMiddleware

from llmchain.testing.contract import MiddlewareContract


class TestRedactContract(MiddlewareContract):
    factory = RedactMiddleware
    options = {"patterns": {"TICKET": r"TCK-\d{4}"}}


class TestRedactWithoutRestoreContract(MiddlewareContract):
    factory = RedactMiddleware
    options = {"restore": False, "roles": ["user"]}
    examples = 5
