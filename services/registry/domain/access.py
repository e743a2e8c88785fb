"""Identity access rules (SPEC §2 "Privacy"): what makes a reason for seeing personal data a real
one, and how often one caller may look people up by ID number. Pure: no I/O, unit-tested."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

# The reason rule is shared with the alerts service (emergency contacts in clear).
from shared.access import (  # noqa: F401 - re-exported
    MAX_REASON_CHARS, MAX_REASON_HEADER_BYTES, MIN_REASON_CHARS, PLACEHOLDERS, reason_problem,
)

# ID-number lookups: each one is an identity access. A service desk looks up a few people a minute;
# trying the ~365 dates a masked number leaves open takes a caller the better part of an hour, every
# try in the audit log.
LOOKUPS_PER_WINDOW = 20
LOOKUP_WINDOW = timedelta(seconds=60)


def lookup_retry_after(recent: list[datetime], now: datetime) -> int | None:
    """Seconds until the caller may look up again, or None if they may now. `recent` holds the times
    of their latest lookups (at most LOOKUPS_PER_WINDOW of them, any order)."""
    in_window = sorted(t for t in recent if now - t < LOOKUP_WINDOW)
    if len(in_window) < LOOKUPS_PER_WINDOW:
        return None
    oldest_that_counts = in_window[-LOOKUPS_PER_WINDOW]
    return max(1, math.ceil((oldest_that_counts + LOOKUP_WINDOW - now).total_seconds()))
