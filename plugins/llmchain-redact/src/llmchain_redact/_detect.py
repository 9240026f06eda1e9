"""Finding PII in text, and swapping it for placeholders that can be swapped back.

Detectors run in priority order (custom patterns, cards, emails, phones); a later detector never
claims text an earlier one already matched. Card numbers must pass the Luhn check and phone
numbers must look like phone numbers (a ``+`` country code, an area code in parentheses, or a
usual grouping), so order numbers, dates and amounts are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}"
    r"(?![\w-])"
)
CARD = re.compile(r"(?<![+\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
PHONE = re.compile(
    r"""(?<![\w+])(?:
        \+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}  # +44 20 7946 0958
      | \(\d{3}\)[ .-]?\d{3}[ .-]\d{4}                                     # (555) 123-4567
      | \d{3}([.-])\d{3}\1\d{4}                                            # 555-123-4567
      | \d{3}\ \d{3}\ \d{4}                                                # 555 123 4567
      | 0\d{1,4}[ -]\d{3,4}[ -]?\d{3,4}                                    # 020 7946 0958
      | 0\d(?:[ .]\d{2}){4}                                                # 01 23 45 67 89
    )(?!\w)""",
    re.VERBOSE,
)
BUILTIN_LABELS = ("CARD", "EMAIL", "PHONE")
LABEL = re.compile(r"[A-Z][A-Z0-9_]*")


def luhn_ok(number: str) -> bool:
    """The Luhn checksum every payment card number satisfies (digits only)."""
    total = 0
    for i, char in enumerate(reversed(number)):
        digit = int(char)
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _is_card(text: str) -> bool:
    digits = _digits(text)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _is_phone(text: str) -> bool:
    return 7 <= len(_digits(text)) <= 15


@dataclass(frozen=True)
class Detector:
    """One kind of PII: its placeholder label, its pattern, and a check on each match."""

    label: str
    pattern: re.Pattern[str]
    accept: Callable[[str], bool] = bool


def build_detectors(
    *, emails: bool = True, phones: bool = True, cards: bool = True, patterns: Mapping[str, str] | None = None
) -> tuple[Detector, ...]:
    """Detectors in priority order: custom patterns first, then cards, emails, phones."""
    found = [Detector(label, re.compile(regex)) for label, regex in (patterns or {}).items()]
    if cards:
        found.append(Detector("CARD", CARD, _is_card))
    if emails:
        found.append(Detector("EMAIL", EMAIL))
    if phones:
        found.append(Detector("PHONE", PHONE, _is_phone))
    return tuple(found)


def find(text: str, detectors: Iterable[Detector]) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, label) spans, sorted; earlier detectors take precedence."""
    chosen: list[tuple[int, int, str]] = []
    for detector in detectors:
        for match in detector.pattern.finditer(text):
            start, end = match.span()
            if end == start or not detector.accept(match.group()):
                continue
            if all(end <= s or start >= e for s, e, _ in chosen):
                chosen.append((start, end, detector.label))
    return sorted(chosen)


class Redaction:
    """One call's placeholders: each distinct value gets one, numbered per label.

    A placeholder that already occurs in the call's text is skipped, so restoring never
    rewrites something the caller wrote themselves.
    """

    def __init__(self, template: str, context: str) -> None:
        self.template = template
        self.context = context
        self.by_value: dict[tuple[str, str], str] = {}
        self.originals: dict[str, str] = {}
        self._numbers: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.originals)

    def counts(self) -> dict[str, int]:
        """How many distinct values were masked, per label (never the values)."""
        out: dict[str, int] = {}
        for label, _ in self.by_value:
            out[label] = out.get(label, 0) + 1
        return dict(sorted(out.items()))

    def _placeholder(self, label: str, value: str) -> str:
        key = (label, value)
        if key not in self.by_value:
            n = self._numbers.get(label, 0)
            while True:
                n += 1
                placeholder = self.template.format(label=label, n=n)
                if placeholder not in self.context:
                    break
            self._numbers[label] = n
            self.by_value[key] = placeholder
            self.originals[placeholder] = value
        return self.by_value[key]

    def mask(self, text: str, detectors: Iterable[Detector]) -> str:
        parts, last = [], 0
        for start, end, label in find(text, detectors):
            parts += [text[last:start], self._placeholder(label, text[start:end])]
            last = end
        return "".join(parts) + text[last:] if parts else text

    def restore(self, text: str) -> str:
        """``text`` with every placeholder of this call replaced by its original value."""
        if not self.originals or not text:
            return text
        # longest first, so that <EMAIL_1> never eats the start of <EMAIL_10> (custom templates)
        alternatives = sorted(self.originals, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(p) for p in alternatives))
        return pattern.sub(lambda m: self.originals[m.group()], text)

    def restore_value(self, value: Any) -> Any:
        """``restore`` inside a parsed answer: JSON-like values, or a pydantic model re-validated."""
        if isinstance(value, str):
            return self.restore(value)
        if isinstance(value, list):
            return [self.restore_value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.restore_value(v) for v in value)
        if isinstance(value, dict):
            return {k: self.restore_value(v) for k, v in value.items()}
        if isinstance(value, BaseModel):
            try:
                return type(value).model_validate(self.restore_value(value.model_dump()))
            except ValueError:  # the model rejects the original value: keep what was validated
                return value
        return value
