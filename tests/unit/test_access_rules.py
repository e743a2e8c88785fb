"""Reasons for seeing personal data, and the ID-number lookup rate."""

from datetime import datetime, timedelta, timezone

import pytest

from services.registry.domain.access import (
    LOOKUP_WINDOW, LOOKUPS_PER_WINDOW, MAX_REASON_CHARS, lookup_retry_after, reason_problem,
)


@pytest.mark.parametrize("reason", ["核对补贴", "联系家属确认走访时间", "verify subsidy list", "走访核实 case 17"])
def test_real_reasons_pass(reason):
    assert reason_problem(reason) is None


@pytest.mark.parametrize("reason,kind", [
    (None, "missing"), ("   ", "missing"), ("x", "invalid"), ("abc", "invalid"), ("aaaa", "invalid"),
    ("1234", "invalid"), ("....", "invalid"), ("test", "invalid"), ("测试", "invalid"), ("N/A", "invalid"),
    ("工作需要", "invalid"), ("核对\u0000补贴", "invalid"), ("核" * (MAX_REASON_CHARS + 1), "invalid"),
])
def test_blank_short_placeholder_or_oversized_reasons_are_refused(reason, kind):
    assert reason_problem(reason)[0] == kind


def test_lookups_beyond_the_window_rate_wait_until_the_oldest_leaves_the_window():
    now = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
    recent = [now - timedelta(seconds=50 - i) for i in range(LOOKUPS_PER_WINDOW)]
    assert lookup_retry_after(recent[:-1], now) is None
    assert lookup_retry_after(recent, now) == 10
    assert lookup_retry_after([t - LOOKUP_WINDOW for t in recent], now) is None
