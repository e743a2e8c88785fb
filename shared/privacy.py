"""Personal data in free text, and spreadsheets that cannot attack the person opening them.

`mask_personal` masks ID and phone numbers wherever they appear in a text (a clerk types a phone
number into the address column, an error message quotes a cell, a log line quotes a query): by
content, not by the column they were meant for. `spreadsheet_safe` neutralises cells a spreadsheet
would run as a formula (OWASP "CSV injection"). Pure: no I/O, unit-tested.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from shared.idcard import mask_id_number, mask_phone

__all__ = ["mask_personal", "mask_scientific", "spreadsheet_safe", "spreadsheet_cell", "FORMULA_STARTS",
           "keyed_hash"]

# Left alone: identifiers of our own that may hold long digit runs (UUIDs, W3C trace and span ids).
_OURS = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|(?<![0-9A-Za-z])(?:[0-9a-f]{32}|[0-9a-f]{16})(?![0-9A-Za-z])"
# A number a spreadsheet wrote in scientific notation with 11 digits or more before the point
# (an ID number stored as a numeric cell: 4.10928194501011E+17 shows region and birth date).
_SCIENTIFIC = r"(?<![0-9.])[0-9](?:\.[0-9]+)?[eE]\+?(?:1[0-9]|[2-9][0-9])(?![0-9])"
# Mobile numbers written in groups (138-1234-5678, 138 1234 5678), optionally +86 first.
_GROUPED_MOBILE = r"(?<![0-9])(?:\+?86[- ]?)?1[3-9][0-9][- ][0-9]{4}[- ][0-9]{4}(?![0-9])"
# Landlines with an area code (0393-1234567, 0393 12345678).
_LANDLINE = r"(?<![0-9])0[0-9]{2,3}[- ][0-9]{7,8}(?![0-9])"
# Any run of 11 digits or more (with an ID number's X last): mobiles, ID numbers, numbers with +86.
_DIGITS = r"(?<![0-9])[0-9]{11,}[Xx]?(?![0-9])"
_PATTERN = re.compile(
    f"(?P<ours>{_OURS})|(?P<sci>{_SCIENTIFIC})|(?P<grouped>{_GROUPED_MOBILE}|{_LANDLINE})|(?P<digits>{_DIGITS})",
    re.ASCII)
_FULL_WIDTH = str.maketrans("０１２３４５６７８９Ｘｘ＋－", "0123456789Xx+-")


def mask_scientific(text: str) -> str:
    """4.10928194501011E+17 -> 4.**************E+17: the digit a spreadsheet shows first, no more."""
    mantissa, _, exponent = text.upper().partition("E")
    head, _, tail = mantissa.partition(".")
    return head + ("." + "*" * len(tail) if tail else "") + "E" + exponent


def _replace(match: re.Match) -> str:
    kind = match.lastgroup
    text = match.group(0)
    if kind == "ours":
        return text
    if kind == "sci":
        return mask_scientific(text)
    if kind == "grouped":
        digits = re.sub(r"[^0-9]", "", text)
        return mask_phone(digits) or ""
    digits = text
    if len(digits) >= 14:
        return mask_id_number(digits) or ""
    return mask_phone(digits) or ""


def mask_personal(text: str | None) -> str | None:
    """`text` with every ID and phone number in it masked (as `mask_id_number`/`mask_phone` would),
    ID numbers in scientific notation too. Idempotent: masked numbers are left as they are."""
    if not text:
        return text
    if not any(ch.isdigit() for ch in text):
        return text
    if not text.isascii():
        # Full-width digits typed with a Chinese input method are the same numbers.
        folded = text.translate(_FULL_WIDTH)
        if folded != text and _PATTERN.search(folded):
            text = folded
    return _PATTERN.sub(_replace, text)


# Cells a spreadsheet reads as a formula (or as the start of one, after a tab or line break).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value):
    """A value for a CSV/XLSX cell: text that would start a formula gets a leading apostrophe, which
    Excel, WPS and LibreOffice show as text; numbers and everything else are left alone."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def spreadsheet_safe(rows: Iterable[Iterable]) -> list[list]:
    """Every row of a table about to be written to a spreadsheet, each cell through `spreadsheet_cell`."""
    return [[spreadsheet_cell(v) for v in row] for row in rows]


def keyed_hash(secret: str, purpose: str, value: str) -> str:
    """HMAC-SHA256 of `value` under a key derived from `secret` for `purpose`, hex. An ID number has
    too few possible values for a plain hash to hide it (region x date x sequence can be tried in
    minutes); without the key the hash says nothing, with it an auditor can check a given number."""
    key = hmac.new(secret.encode(), f"eldercare/{purpose}".encode(), hashlib.sha256).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
