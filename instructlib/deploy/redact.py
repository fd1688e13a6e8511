"""Chapter 10: redact what must not be written to a log before a request or a feedback is stored.

The model sees the user's text as sent; the *logs* (which outlive the request, get copied into
training sets and are read by people labelling them) must not keep personal data or secrets:
e-mail addresses, phone numbers, payment-card numbers (checked with the Luhn sum), national ID
numbers (the 18-character Chinese resident ID), IP addresses, and credentials (API keys, bearer
tokens, ``password=...``). Each match becomes a typed placeholder such as ``[EMAIL]``, so a labeller
still sees the shape of the request.

Patterns are deliberately narrow so that task data survives: the verifiable tasks are full of
short numbers ("12 45 3") and none of those is a phone or card number. Regular expressions are a
floor, not a guarantee: names and street addresses are not detected (a named-entity model would
be the next step); the chapter says so.
"""
from __future__ import annotations

import re
from typing import Any

PLACEHOLDERS = ("EMAIL", "PHONE", "CARD", "ID_NUMBER", "IP", "SECRET")

_SECRET = re.compile(
    r"(?i)\b(sk-[A-Za-z0-9_-]{16,}|(?:api[_-]?key|token|password|passwd|secret)\s*[:=]\s*\S+|bearer\s+[A-Za-z0-9._~+/-]{16,}=*)")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_ID_NUMBER = re.compile(r"(?<![0-9])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9])")
_CARD = re.compile(r"(?<![0-9])(?:\d[ -]?){12,18}\d(?![0-9])")
_IP = re.compile(r"(?<![0-9.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![0-9.])")
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ -])(?:\+\d{1,3}[ -]?)?(?:\(\d{2,4}\)[ -]?|\d{2,4}[ -])\d{3,4}[ -]\d{4}(?![ -]?\d)"  # 555-123-4567
    r"|(?<![0-9])1[3-9]\d{9}(?![0-9])"                                                        # 13812345678
    r"|\+\d{7,14}(?![0-9])")                                                                  # +4930123456


def _luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return 13 <= len(digits) <= 19 and total % 10 == 0


def redact(text: str) -> str:
    """``text`` with e-mails, phones, card and ID numbers, IP addresses and secrets replaced by placeholders."""
    text = _SECRET.sub("[SECRET]", text)
    text = _EMAIL.sub("[EMAIL]", text)
    text = _ID_NUMBER.sub("[ID_NUMBER]", text)
    text = _CARD.sub(lambda m: "[CARD]" if _luhn_ok(m.group()) else m.group(), text)
    text = _IP.sub("[IP]", text)
    return _PHONE.sub("[PHONE]", text)


def redact_obj(obj: Any) -> Any:
    """Redact every string inside a JSON-like value (dicts, lists), keys untouched."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


def was_redacted(text: str) -> bool:
    """True when ``text`` holds a redaction placeholder."""
    return any(f"[{p}]" in text for p in PLACEHOLDERS)
