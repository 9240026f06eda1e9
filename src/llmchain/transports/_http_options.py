"""The options every HTTP transport accepts, and the checks that keep hostile values out of
requests: a header name or value, a URL or a request id carrying CR, LF or NUL could split the
request (header injection, request smuggling), so they are refused when the chain is built, with
the field named.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._exceptions import ConfigError
from .._redact import SECRET_HEADERS

#: RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CR, LF, NUL and other controls (not tab)

KIB, MIB = 1024, 1024 * 1024


def check_header_name(name: str, field: str) -> None:
    if not _TOKEN.match(name):
        raise ConfigError(f"{field}: header name {name!r} is not a valid HTTP header name "
                          "(letters, digits and !#$%&'*+-.^_`|~ only; no spaces, CR, LF or NUL)")


def check_header_value(value: str, field: str) -> None:
    if _CONTROL.search(value):
        raise ConfigError(f"{field}: the value contains a control character (CR, LF or NUL), "
                          "which would split the HTTP request; remove it")


def check_base_url(url: str, field: str = "base_url") -> str:
    """``url`` if it is an absolute http(s) URL with a host and nothing that could split a request."""
    if _CONTROL.search(url) or " " in url:
        raise ConfigError(f"{field} {url!r} contains a space or a control character (CR, LF, NUL)")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number or out of range
    except ValueError as exc:
        raise ConfigError(f"{field} {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{field} {url!r} is not an absolute http:// or https:// URL with a host "
                          "(e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1)")
    del port
    return url


class HTTPOptions(BaseModel):
    """Options every HTTP transport accepts (each transport adds its own)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    base_url: str
    model: str
    api_key_env: str = Field("", description='Variable holding the API key; "" for none (local servers).')
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers (no secrets).")
    headers_env: dict[str, str] = Field(
        default_factory=dict, description="Secret headers: header name → variable holding its value.")
    connect_timeout_s: float | None = Field(10.0, gt=0, description="Limit on opening a connection.")
    read_timeout_s: float | None = Field(
        None, gt=0, description="Longest silence while reading (None: the call's deadline bounds it).")
    max_connections: int = Field(256, ge=0, description="Connection pool size per event loop; 0 = no limit.")
    max_connections_per_host: int = Field(0, ge=0, description="0 = no per-host limit (aiohttp only).")
    keepalive_s: float = Field(30.0, gt=0, description="How long an idle pooled connection is kept.")
    http_client: Literal["aiohttp", "httpx"] = Field(
        "aiohttp", description='The HTTP engine: "aiohttp" (default) or "httpx".')
    trust_env: bool = Field(
        True, description="Honour HTTP(S)_PROXY / NO_PROXY (and SSL_CERT_FILE) from the environment.")
    proxy: str | None = Field(None, description="An explicit http(s) proxy URL (wins over the environment).")
    verify: bool = Field(True, description="Verify the server's TLS certificate (false: testing only).")
    ca_bundle: str | None = Field(None, description="PEM file of CA certificates to trust (a corporate CA).")
    client_cert: str | None = Field(None, description="PEM client certificate for mutual TLS.")
    client_key: str | None = Field(None, description="PEM private key of client_cert (if not in that file).")
    max_head_bytes: int = Field(64 * KIB, ge=1 * KIB, description="Cap on a response's status line+headers.")
    max_body_bytes: int = Field(
        64 * MIB, ge=1 * KIB, description="Cap on a response body (or a whole stream) as sent on the wire.")
    max_decompressed_bytes: int = Field(
        64 * MIB, ge=1 * KIB, description="Cap on a compressed body once decompressed.")
    idempotency_header: str = Field(
        "idempotency-key",
        description='Header carrying the request id (the same on every retry); "" for none.')

    @field_validator("http_client", mode="before")
    @classmethod
    def _engine_name(cls, value: object) -> object:
        if value in ("h1", "auto"):
            raise ValueError(f'http_client = "{value}" is no longer available: llmchain\'s own HTTP/1.1 '
                             'engine was removed. Use "aiohttp" (the default) or "httpx"')
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _as_value_error(check_base_url, value, "base_url")

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is not None:
            _as_value_error(check_base_url, value, "proxy")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        secret = sorted(h for h in value if h.lower() in SECRET_HEADERS)
        if secret:
            raise ValueError(f"header(s) {secret} carry secrets: name the variable holding each "
                             "in headers_env (or api_key_env) instead")
        for name, text in value.items():
            _as_value_error(check_header_name, name, "headers")
            _as_value_error(check_header_value, text, f"headers[{name!r}]")
        return value

    @field_validator("headers_env")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            _as_value_error(check_header_name, name, "headers_env")
        return value

    @field_validator("idempotency_header")
    @classmethod
    def _idempotency(cls, value: str) -> str:
        if value:
            _as_value_error(check_header_name, value, "idempotency_header")
        return value

    @field_validator("connect_timeout_s", "read_timeout_s", "keepalive_s")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value


def _as_value_error(check: Callable[[str, str], object], value: str, field: str) -> str:
    """Run a ``check_*`` inside a pydantic validator (which wants ValueError, not ConfigError)."""
    try:
        check(value, field)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return value

