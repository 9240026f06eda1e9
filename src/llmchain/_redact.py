"""Secret redaction shared by errors, logs, cache entries and reprs.

Known key shapes (``sk-…``, ``Bearer …``, ``x-api-key: …``) are masked by pattern; every
secret llmchain reads from the environment is registered here too, so it is masked by value
wherever it would otherwise appear. Users add their own with ``register_secret(value)`` and
``register_pattern(regex)`` (the log stage's ``redact_env`` / ``redact_patterns`` options call
them). Registrations are process-wide and cannot be undone: a secret, once known, stays masked.

Redact first, trim second: trimming first could cut a secret in half and leak its prefix.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "[REDACTED]"
_PATTERNS = [
    re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*"),
    re.compile(r"(?i)((?:x-api-key|api[_-]?key|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}"),
]
# A superset of what the three patterns match: text without a hit skips the substitutions,
# which keeps redaction of ordinary log fields to one regex search.
_MAYBE = re.compile(
    r"(?:sk|pk|rk)-[A-Za-z0-9_\-]{8}|(?i:bearer)\s|(?i:x-api-key|api[_-]?key|authorization)"
)

#: Header names whose values are secrets as a whole (compared lower-case).
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie",
    "x-goog-api-key", "openai-api-key", "anthropic-api-key",
})
#: Mapping keys whose values are masked as a whole when walking data (compared lower-case).
SECRET_KEYS = frozenset({
    "api_key", "apikey", "api-key", "x-api-key", "password", "secret", "token", "access_token",
    "refresh_token", "authorization", "client_secret", "private_key",
})

_lock = threading.Lock()
_values: frozenset[str] = frozenset()
_user_patterns: tuple[re.Pattern[str], ...] = ()


def register_secret(value: str | None) -> None:
    """Mask this exact value everywhere from now on (values shorter than 6 chars are ignored)."""
    global _values
    if value and len(value) >= 6:
        with _lock:
            _values = _values | {value}


def register_pattern(pattern: str | re.Pattern[str]) -> None:
    """Mask every match of ``pattern`` (a regex) everywhere from now on.

    Raises ``ValueError`` for an invalid regex or one that matches the empty string.
    """
    global _user_patterns
    try:
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    except re.error as exc:
        raise ValueError(f"invalid redaction pattern {pattern!r}: {exc}") from None
    if compiled.search("") is not None:
        raise ValueError(f"redaction pattern {compiled.pattern!r} matches the empty string")
    with _lock:
        if compiled not in _user_patterns:
            _user_patterns = (*_user_patterns, compiled)


def redact(text: str) -> str:
    """Return ``text`` with every known secret masked."""
    for value in _values:
        if value in text:
            text = text.replace(value, MASK)
    if _MAYBE.search(text) is not None:
        text = _PATTERNS[0].sub(MASK, text)
        text = _PATTERNS[1].sub(lambda m: f"{m.group(1)} {MASK}", text)
        text = _PATTERNS[2].sub(lambda m: f"{m.group(1)}{MASK}", text)
    for pattern in _user_patterns:
        text = pattern.sub(MASK, text)
    return text


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with secret headers masked whole and every other value redacted."""
    return {
        name: MASK if name.lower() in SECRET_HEADERS else redact(str(value))
        for name, value in headers.items()
    }


def redact_value(value: Any, *, _depth: int = 0) -> Any:
    """``value`` with every string redacted, walking dicts, lists and tuples.

    Values under secret-looking keys (``api_key``, ``authorization``…) are masked whole.
    Other types pass through unchanged; nesting deeper than 20 levels is replaced by a marker.
    """
    if isinstance(value, str):
        return redact(value)
    if _depth > 20:
        return "[TOO DEEP]"
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and k.lower() in SECRET_KEYS and v
            else redact_value(v, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v, _depth=_depth + 1) for v in value)
    return value


def contains_secret(value: Any, *, _depth: int = 0) -> bool:
    """Whether any string in ``value`` (walking dicts, lists, tuples; keys too) holds a secret.

    Check data *before* encoding it: escaping (JSON's ``\\"``) can hide a secret from the patterns.
    """
    texts: list[str] = []
    _strings(value, texts, _depth)
    if not texts:
        return False
    if not _user_patterns:
        # The usual answer is "no", and one look at all the strings at once says so. It cannot
        # miss: a registered value, or text _MAYBE matches (no anchors, no lookarounds), inside
        # one string is also inside the joined text. A hit (maybe across two strings) is decided
        # string by string below.
        joined = "\x00".join(texts)
        if not _maybe_secret(joined) and not any(v in joined for v in _values):
            return False
    return any(redact(text) != text for text in texts)


def _maybe_secret(text: str) -> bool:
    """False only if ``_MAYBE`` cannot match ``text``; several times cheaper than the search.

    Every match of ``_MAYBE`` contains ``k-`` (``sk-``, ``pk-``, ``rk-``, case-sensitive) or,
    in any case, ``bearer``, ``key`` or ``authorization``. Lower-casing finds those unless a
    character matches a letter of them only in the regex engine's case-insensitive sense:
    dotless i (U+0131, which ``re`` equates with ``i``) and dotted capital I (U+0130, which
    ``str.lower`` turns into ``i`` and a combining dot); text with either is searched.
    """
    if "k-" in text:
        return _MAYBE.search(text) is not None
    low = text.lower()
    if "bearer" in low or "key" in low or "authorization" in low or "\u0131" in low or "\u0307" in low:
        return _MAYBE.search(text) is not None
    return False


_LEAVES = (int, float, type(None))  # nothing to walk (bool is an int)


def _strings(value: Any, out: list[str], depth: int) -> None:
    """Append every string in ``value`` to ``out`` (keys too), as ``contains_secret`` walks it:
    into dicts, lists and tuples down to depth 20; strings at any depth."""
    if isinstance(value, str):
        out.append(value)
        return
    if depth > 20:
        return
    if isinstance(value, (dict, Mapping)):
        items: Any = value.items()
        for k, v in items:
            if isinstance(k, str):
                out.append(k)
            elif not isinstance(k, _LEAVES):
                _strings(k, out, depth + 1)
            if isinstance(v, str):
                out.append(v)
            elif not isinstance(v, _LEAVES):
                _strings(v, out, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, str):
                out.append(v)
            elif not isinstance(v, _LEAVES):
                _strings(v, out, depth + 1)


def mask(value: str | None) -> str:
    """How a secret is shown in reprs: its presence, never its characters."""
    return "<unset>" if not value else MASK


def trim(text: str, limit: int = 300) -> str:
    """Shorten ``text`` for an error or log line, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more chars]"


LOG_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}


#: Extra attribute marking a record whose extra fields are already redacted. The leading
#: underscore keeps it out of python-json-logger's output.
PRE_REDACTED = "_llmchain_redacted"


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's message, arguments, exception and extras.

    Attach it to a handler (``setup_json_logging`` does) so that every record the handler
    writes, from llmchain or from user code, is masked. It renders the exception text itself
    so the traceback is redacted too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                record.msg = record.getMessage()
            except Exception:  # a broken format string: keep what there is
                record.msg = f"{record.msg} {record.args!r}"
            record.args = None
        if isinstance(record.msg, (str, dict)):
            record.msg = redact_value(record.msg)
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        if getattr(record, PRE_REDACTED, False):
            return True  # the log stage redacted every field itself: skip the walk (~10 µs)
        for name, value in list(vars(record).items()):
            if name not in LOG_RECORD_ATTRS and isinstance(value, (str, dict, list, tuple)):
                setattr(record, name, redact_value(value))
        return True
