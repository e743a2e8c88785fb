"""Retention settings: de-duplication rows outlive the outbox, or a replay would apply events twice."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.messaging.pruning import PruneTarget
from shared.settings import PlatformSettings


def test_defaults_keep_dedup_rows_longer_than_the_outbox():
    settings = PlatformSettings()
    assert settings.dedup_retention_days == 14 and settings.outbox_retention_days == 7


@pytest.mark.parametrize("dedup, outbox", [(7, 7), (3, 7), (10, 30)])
def test_a_dedup_retention_not_longer_than_the_outbox_is_refused_naming_both(dedup, outbox):
    with pytest.raises(ValidationError) as info:
        PlatformSettings(dedup_retention_days=dedup, outbox_retention_days=outbox)
    assert "DEDUP_RETENTION_DAYS" in str(info.value) and "OUTBOX_RETENTION_DAYS" in str(info.value)


def test_a_longer_dedup_retention_is_accepted():
    assert PlatformSettings(dedup_retention_days=31, outbox_retention_days=30).dedup_retention_days == 31


def test_a_prune_target_names_only_plain_identifiers():
    assert "DELETE FROM \"inbox\"" in PruneTarget("inbox", "processed_at").statement()
    with pytest.raises(ValueError):
        PruneTarget("inbox; DROP TABLE residents", "processed_at").statement()
