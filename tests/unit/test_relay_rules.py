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


# A replay after a loss: its range, how it moves on, and a second loss in the middle of it.
from shared.messaging.kafka import topic_problems  # noqa: E402
from shared.messaging.relay import Replay, replay_advanced, replay_after_loss  # noqa: E402
from shared.messaging.topics import INGEST, RESIDENTS, outbox_retention_hours, topic_config  # noqa: E402


def test_a_loss_replays_every_retained_row_from_the_oldest():
    replay = replay_after_loss(None, first_id=101, last_id=500, losses=0)
    assert replay == Replay(start=100, position=100, end=500, losses=1)
    assert not replay.done


def test_nothing_retained_means_no_replay():
    assert replay_after_loss(None, first_id=None, last_id=None, losses=3) is None


def test_a_replay_moves_on_with_what_was_acknowledged_and_finishes_at_its_end():
    replay = replay_after_loss(None, 1, 10, 0)
    replay = replay_advanced(replay, [1, 2, 3])
    assert (replay.position, replay.done) == (3, False)
    replay = replay_advanced(replay, [4, 5, 6, 7, 8, 9, 10])
    assert replay.done


def test_a_second_loss_mid_replay_goes_again_from_the_start_and_covers_the_newer_rows():
    # The emptied log lost what the first replay had sent; a consumer behind it must still see it.
    first = replay_advanced(replay_after_loss(None, 1, 1000, 0), list(range(1, 601)))
    second = replay_after_loss(first, first_id=1, last_id=1200, losses=first.losses)
    assert second == Replay(start=0, position=0, end=1200, losses=2)
    # Rows pruned meanwhile do not shrink the range backwards past the first replay's start.
    third = replay_after_loss(second, first_id=50, last_id=1100, losses=2)
    assert (third.start, third.end) == (0, 1200)


def test_topics_missing_or_with_another_partition_count_are_named():
    actual = {"a": {0, 1, 2, 3}, "b": {0, 1, 2, 3, 4, 5, 6, 7}, "d": set()}
    problems = topic_problems(["a", "b", "c", "d"], 8, actual)
    assert problems == {"a": "has 4 partitions, expected 8", "c": "missing", "d": "missing"}
    assert topic_problems(["b"], 8, actual) == {}


def test_every_topic_has_an_explicit_retention_and_residents_are_compacted():
    assert topic_config(RESIDENTS.name)["cleanup.policy"] == "compact"
    assert int(topic_config(INGEST.name)["retention.ms"]) == 7 * 24 * 3600 * 1000
    assert topic_config(RESIDENTS.dlq)["cleanup.policy"] == "delete"
    assert topic_config("not.ours") == {}
    # Telemetry is kept hours in the outbox, resident state the default (OUTBOX_RETENTION_DAYS).
    assert outbox_retention_hours(INGEST.name, 168.0) == 6.0
    assert outbox_retention_hours(RESIDENTS.name, 168.0) == 168.0
    assert outbox_retention_hours(INGEST.name, 2.0) == 2.0
