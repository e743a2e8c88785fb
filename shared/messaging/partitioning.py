"""Which partition a key lands on: the default partitioner of every Kafka client (murmur2), so the
relay's record batches and a plain producer agree."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

_PARTITIONER = DefaultPartitioner()


def partition_for(key: bytes | None, partitions: int) -> int:
    all_partitions = list(range(partitions))
    return _PARTITIONER(key, all_partitions, all_partitions)
