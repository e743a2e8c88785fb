"""The relay's pure rules for noticing that the broker lost its log."""

from shared.messaging.relay import acks_went_backwards, end_offsets_went_backwards


def test_acks_below_a_previous_ack_mean_the_log_was_lost():
    highs = {("t", 0): 41, ("t", 1): 7}
    assert acks_went_backwards(highs, [("t", 0, 3)])
    assert acks_went_backwards(highs, [("t", 1, 7)])


def test_growing_acks_and_new_partitions_are_normal():
    highs = {("t", 0): 41}
    assert not acks_went_backwards(highs, [("t", 0, 42), ("t", 1, 0), ("u", 0, 0)])


def test_end_offset_at_or_below_last_ack_or_missing_partition_means_lost():
    highs = {("t", 0): 41}
    assert end_offsets_went_backwards(highs, {("t", 0): 41})
    assert end_offsets_went_backwards(highs, {("t", 0): 0})
    assert end_offsets_went_backwards(highs, {("t", 0): None})
    assert end_offsets_went_backwards(highs, {})
    assert not end_offsets_went_backwards(highs, {("t", 0): 42})
    assert not end_offsets_went_backwards({}, {})
