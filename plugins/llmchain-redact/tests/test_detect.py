"""Detection and placeholders: what counts as PII, and masking that restores exactly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llmchain_redact import Redaction, build_detectors, find, luhn_ok

DETECTORS = build_detectors()


def labels(text: str) -> list[tuple[str, str]]:
    return [(label, text[s:e]) for s, e, label in find(text, DETECTORS)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ann.lee+news@mail.example.co.uk.", [("EMAIL", "ann.lee+news@mail.example.co.uk")]),
        ("card 4111 1111 1111 1111 ok", [("CARD", "4111 1111 1111 1111")]),
        ("card 5500-0000-0000-0004", [("CARD", "5500-0000-0000-0004")]),
        ("amex 378282246310005", [("CARD", "378282246310005")]),
        ("call +44 20 7946 0958 today", [("PHONE", "+44 20 7946 0958")]),
        ("call +4915112345678", [("PHONE", "+4915112345678")]),
        ("call (555) 123-4567", [("PHONE", "(555) 123-4567")]),
        ("call 555.123.4567 or 555 123 4567", [("PHONE", "555.123.4567"), ("PHONE", "555 123 4567")]),
        ("call 020 7946 0958", [("PHONE", "020 7946 0958")]),
        ("appel 01 23 45 67 89", [("PHONE", "01 23 45 67 89")]),
    ],
)
def test_finds_pii(text: str, expected: list[tuple[str, str]]) -> None:
    assert labels(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112",  # 16 digits failing Luhn: an order number, not a card
        "on 2024-01-15 at 12:30:45",
        "from 192.168.100.200",
        "version 1.22.333, total 1,234,567.89",
        "ticket 1234567",  # bare digits: no phone shape
        "a@b",  # no domain
        "see user@localhost",
    ],
)
def test_leaves_lookalikes_alone(text: str) -> None:
    assert labels(text) == []


def test_luhn_known_numbers() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112") and not luhn_ok("79927398710")


def _with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.integers(0, 17), st.integers(1, 9))
def test_luhn_catches_every_single_digit_error(body: str, where: int, delta: int) -> None:
    number = _with_check_digit(body)
    assert luhn_ok(number)
    i = where % len(number)
    broken = number[:i] + str((int(number[i]) + delta) % 10) + number[i + 1 :]
    assert not luhn_ok(broken)


def test_custom_patterns_take_precedence_over_builtins() -> None:
    detectors = build_detectors(patterns={"ACCOUNT": r"acct-\d{3}-\d{3}-\d{4}"})
    text = "acct-555-123-4567 and 555-123-4567"
    assert [(label, text[s:e]) for s, e, label in find(text, detectors)] == [
        ("ACCOUNT", "acct-555-123-4567"),
        ("PHONE", "555-123-4567"),
    ]


def test_disabled_detectors_find_nothing() -> None:
    none = build_detectors(emails=False, phones=False, cards=False)
    assert find("ann@example.com +44 20 7946 0958 4111111111111111", none) == []


PII = st.sampled_from(
    ["ann@example.com", "bo@x.org", "+44 20 7946 0958", "(555) 123-4567", "4111 1111 1111 1111"]
)
FILLER = st.text(alphabet="abc <>_XYZ.,-\n", max_size=12)


@settings(max_examples=150)
@given(st.lists(st.tuples(FILLER, PII), max_size=6), FILLER)
def test_mask_then_restore_is_the_identity(parts: list[tuple[str, str]], tail: str) -> None:
    text = "".join(f"{f} {p} " for f, p in parts) + tail
    redaction = Redaction("<{label}_{n}>", text)
    masked = redaction.mask(text, DETECTORS)
    for _, value in parts:
        assert value not in masked
    assert redaction.restore(masked) == text
    # one placeholder per distinct value, numbered from 1 per label
    assert len(redaction.originals) == len({(lab, v) for lab, v in labels(text)})


def test_same_value_same_placeholder_and_numbering_per_label() -> None:
    text = "a@x.io, b@x.io, a@x.io, +44 20 7946 0958"
    redaction = Redaction("<{label}_{n}>", text)
    assert redaction.mask(text, DETECTORS) == "<EMAIL_1>, <EMAIL_2>, <EMAIL_1>, <PHONE_1>"
    assert redaction.counts() == {"EMAIL": 2, "PHONE": 1}


def test_placeholder_already_in_the_text_is_skipped() -> None:
    text = "I literally typed <EMAIL_1>; mail a@x.io"
    redaction = Redaction("<{label}_{n}>", text)
    masked = redaction.mask(text, DETECTORS)
    assert masked == "I literally typed <EMAIL_1>; mail <EMAIL_2>"
    assert redaction.restore(masked) == text


def test_restore_prefers_the_longest_placeholder() -> None:
    text = " ".join(f"u{i}@x.io" for i in range(11))
    redaction = Redaction("{label}{n}", text)  # a template without a closing delimiter
    masked = redaction.mask(text, DETECTORS)
    assert "EMAIL10" in masked and redaction.restore(masked) == text
