"""The relay's pure rules for noticing that the broker lost its log."""

from shared.messaging.relay import ack_ranges, acks_went_backwards, end_offsets_went_backwards


def test_acks_below_a_previous_ack_mean_the_log_was_lost():
    highs = {("t", 0): 41, ("t", 1): 7}
    assert acks_went_backwards(highs, [("t", 0, 3)])
    assert acks_went_backwards(highs, [("t", 1, 7)])


def test_growing_acks_and_new_partitions_are_normal():
    highs = {("t", 0): 41}
    assert not acks_went_backwards(highs, [("t", 0, 42), ("t", 1, 0), ("u", 0, 0)])


def test_end_offset_at_or_below_a_record_known_to_exist_or_missing_partition_means_lost():
    floors = {("t", 0): 41}
    assert end_offsets_went_backwards(floors, {("t", 0): 41})
    assert end_offsets_went_backwards(floors, {("t", 0): 0})
    assert end_offsets_went_backwards(floors, {("t", 0): None})
    assert end_offsets_went_backwards(floors, {})
    assert not end_offsets_went_backwards(floors, {("t", 0): 42})
    assert not end_offsets_went_backwards({}, {})


def test_tansu_end_offset_of_last_batch_base_plus_one_is_not_a_loss():
    # Round acked offsets 100..1609 in batches; Tansu reports end = base of last batch + 1.
    acks = [("t", 0, o) for o in range(100, 1610)]
    low, high = ack_ranges(acks)[("t", 0)]
    assert (low, high) == (100, 1609)
    assert not end_offsets_went_backwards({("t", 0): low}, {("t", 0): 1101})
