"""Which partition a key lands on: the default partitioner of every Kafka client (murmur2), so the
relay's record batches and a plain producer agree."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import DefaultPartitioner

_PARTITIONER = DefaultPartitioner()


def partition_for(key: bytes | None, partitions: int) -> int:
    if key is None:  # a random partition, as every client does for keyless records
        all_partitions = list(range(partitions))
        return _PARTITIONER(None, all_partitions, all_partitions)
    return _keyed_partition(key, partitions)


@lru_cache(maxsize=1 << 17)
def _keyed_partition(key: bytes, partitions: int) -> int:
    # murmur2 in pure Python is a noticeable share of the ingest gateway's CPU per event
    # (docs/benchmarks.md); keys (resident ids) repeat, so the answer is remembered.
    all_partitions = list(range(partitions))
    return _PARTITIONER(key, all_partitions, all_partitions)
