"""Identity access rules (SPEC §2 "Privacy"): what makes a reason for seeing personal data a real
one, and how often one caller may look people up by ID number. Pure: no I/O, unit-tested."""

from __future__ import annotations

import math
import unicodedata
from datetime import datetime, timedelta

# A reason is written to the audit log and read by an auditor: a few words, not an essay, not a
# keystroke. Four characters is a short Chinese phrase (核对补贴, 走访核实) or an English word or two.
MIN_REASON_CHARS = 4
MAX_REASON_CHARS = 500
# The raw X-Access-Reason header, percent-encoded: 500 Chinese characters are 4,500 bytes.
MAX_REASON_HEADER_BYTES = 4_600
# What people type to get past a required field.
PLACEHOLDERS = frozenset({
    "test", "testing", "tests", "asdf", "asdfg", "qwer", "qwerty", "xxxx", "todo", "none", "null", "n/a",
    "na", "reason", "reasons", "because", "why", "check", "just", "lookup", "look up", "see", "view",
    "测试", "无", "没有", "原因", "理由", "查看", "查询", "看看", "不知道", "随便", "需要", "工作需要", "因为",
})
# ID-number lookups: each one is an identity access. A service desk looks up a few people a minute;
# trying the ~365 dates a masked number leaves open takes a caller the better part of an hour, every
# try in the audit log.
LOOKUPS_PER_WINDOW = 20
LOOKUP_WINDOW = timedelta(seconds=60)


def reason_problem(reason: str | None) -> tuple[str, str] | None:
    """None for a real reason; otherwise (kind, message): kind "missing" or "invalid"."""
    text = " ".join((reason or "").split())
    if not text:
        return "missing", "Say why you need this (reason); it is written to the audit log."
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        return "invalid", "reason must not contain control characters."
    if len(text) > MAX_REASON_CHARS:
        return "invalid", f"reason is at most {MAX_REASON_CHARS} characters."
    meaningful = {ch.casefold() for ch in text if ch.isalpha()}
    if len(text) < MIN_REASON_CHARS or len(meaningful) < 2:
        return "invalid", (f"reason must say why in words (at least {MIN_REASON_CHARS} characters, "
                           "not only digits, punctuation or one letter repeated).")
    if text.casefold().strip(" .。!！?？-_") in PLACEHOLDERS:
        return "invalid", "reason must say why; a placeholder is not a reason."
    return None


def lookup_retry_after(recent: list[datetime], now: datetime) -> int | None:
    """Seconds until the caller may look up again, or None if they may now. `recent` holds the times
    of their latest lookups (at most LOOKUPS_PER_WINDOW of them, any order)."""
    in_window = sorted(t for t in recent if now - t < LOOKUP_WINDOW)
    if len(in_window) < LOOKUPS_PER_WINDOW:
        return None
    oldest_that_counts = in_window[-LOOKUPS_PER_WINDOW]
    return max(1, math.ceil((oldest_that_counts + LOOKUP_WINDOW - now).total_seconds()))
