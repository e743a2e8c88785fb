"""Broker plumbing: producers, admin, topics. Written against the Kafka protocol, not Tansu's quirks."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)


def make_producer(bootstrap: str, client_id: str, **overrides) -> AIOKafkaProducer:
    """A producer for the relay. No idempotence or transactions: the embedded broker supports
    neither, so exactly-once comes from the outbox plus consumers de-duplicating by event id."""
    options = dict(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=2,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
    )
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_probe_consumer(bootstrap: str, client_id: str) -> AIOKafkaConsumer:
    """A group-less consumer used only to read metadata and end offsets."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
    )


async def topic_partitions(consumer: AIOKafkaConsumer) -> dict[str, set[int]]:
    """Fresh metadata of every topic: {topic: partitions}. A request for *all* topics never
    auto-creates one (a request naming a topic may, on brokers that auto-create).
    consumer.topics() does not refresh the consumer's cached metadata, hence the client call."""
    cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - no public equivalent
    return {t: set(cluster.partitions_for_topic(t) or ()) for t in cluster.topics()}


async def ensure_topics(bootstrap: str, names: list[str], partitions: int, replication: int = 1,
                        timeout: float = 30.0) -> list[str]:
    """Create missing topics with their partition counts (never rely on auto-creation, whose
    partition count differs between brokers); grow topics that have fewer partitions. Returns
    the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), timeout)
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, num_partitions=partitions, replication_factor=replication) for n in missing]
                )
            except TopicAlreadyExistsError:
                pass
            log.info("created topics", extra={"fields": {"topics": missing, "partitions": partitions}})
        present = [n for n in names if n in existing]
        if present:
            described = await admin.describe_topics(present)
            grow = {
                d["topic"]: NewPartitions(total_count=partitions)
                for d in described
                if 0 < len(d.get("partitions", [])) < partitions
            }
            if grow:
                try:
                    await admin.create_partitions(grow)
                except KafkaError as exc:  # a broker that cannot grow partitions still works
                    log.warning("could not grow partitions: %s", exc)
        return missing
    finally:
        await admin.close()


async def wait_for_broker(bootstrap: str, timeout: float = 60.0) -> None:
    """Wait until the broker answers a metadata request."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await asyncio.wait_for(admin.start(), 5)
            await asyncio.wait_for(admin.list_topics(), 5)
            return
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            last = exc
            await asyncio.sleep(0.5)
        finally:
            try:
                await admin.close()
            except Exception:  # noqa: BLE001 - closing a half-started client
                pass
    raise TimeoutError(f"Kafka broker not reachable at {bootstrap}: {last}")
