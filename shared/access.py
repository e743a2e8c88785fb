"""What makes a reason for seeing personal data in clear a real one (SPEC §2 "Privacy"), for every
service that shows phone or ID numbers on request (the registry's reveals and lookups, the alerts
service's emergency contacts). Pure: no I/O, unit-tested."""

from __future__ import annotations

import unicodedata

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
