"""Secret redaction shared by errors, logs and reprs.

Known key shapes (``sk-…``, ``Bearer …``, ``x-api-key: …``) are masked by pattern; every
secret llmchain reads from the environment is registered here too, so it is masked by value
wherever it would otherwise appear.
"""

from __future__ import annotations

import re
import threading

MASK = "[REDACTED]"
_PATTERNS = [
    re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*"),
    re.compile(r"(?i)((?:x-api-key|api[_-]?key|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}"),
]
_lock = threading.Lock()
_values: frozenset[str] = frozenset()


def register_secret(value: str | None) -> None:
    """Mask this exact value everywhere from now on (values shorter than 6 chars are ignored)."""
    global _values
    if value and len(value) >= 6:
        with _lock:
            _values = _values | {value}


def redact(text: str) -> str:
    """Return ``text`` with every known secret masked."""
    for value in _values:
        if value in text:
            text = text.replace(value, MASK)
    text = _PATTERNS[0].sub(MASK, text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _PATTERNS[2].sub(lambda m: f"{m.group(1)}{MASK}", text)


def mask(value: str | None) -> str:
    """How a secret is shown in reprs: its presence, never its characters."""
    return "<unset>" if not value else MASK


def trim(text: str, limit: int = 300) -> str:
    """Shorten ``text`` for an error or log line, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more chars]"
