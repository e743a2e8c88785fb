"""Broker plumbing: producers, admin, topics. Written against the Kafka protocol, not Tansu's quirks."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable

import aiokafka.client
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.protocol.metadata import MetadataRequest

from shared.messaging.topics import topic_config

log = logging.getLogger(__name__)


def disable_topic_auto_creation() -> None:
    """Make every aiokafka client of this process ask for metadata with allow_auto_topic_creation
    false (Metadata v4+; aiokafka always sends true and has no option for it). A broker that
    auto-creates topics (Tansu does, with 4 partitions; Kafka with auto.create.topics.enable) would
    otherwise create a topic with the wrong partition count the moment a producer or consumer names
    it before the launcher or an operator has created it. Topics are created only by ensure_topics."""
    if not isinstance(aiokafka.client.MetadataRequest, functools.partial):
        aiokafka.client.MetadataRequest = functools.partial(MetadataRequest, allow_auto_topic_creation=False)


disable_topic_auto_creation()


def topic_problems(expected: Iterable[str], partitions: int,
                   actual: dict[str, set[int]]) -> dict[str, str]:
    """What is wrong with the topics we publish to: {topic: "missing" | "has N partitions, expected M"}.
    A topic with another partition count must not be written into: a key would land on another
    partition than its earlier records (murmur2 of the key modulo the count), so its order breaks
    (pure; unit-tested)."""
    problems: dict[str, str] = {}
    for name in expected:
        have = actual.get(name)
        if not have:
            problems[name] = "missing"
        elif len(have) != partitions:
            problems[name] = f"has {len(have)} partitions, expected {partitions}"
    return problems


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
                        timeout: float = 30.0, recreate_wrong: bool = False) -> list[str]:
    """Create missing topics with their partition counts and retention configs (never rely on
    auto-creation, whose partition count differs between brokers). A topic with another partition
    count is logged, and recreated only with `recreate_wrong` (the supervisor of the embedded broker,
    which owns that broker and its log; partitions cannot be grown on Tansu, and growing them would
    move keys anyway). Returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), timeout)
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        present = [n for n in names if n in existing]
        if present:
            described = await admin.describe_topics(present)
            actual = {d["topic"]: {p["partition"] for p in d.get("partitions", [])} for d in described}
            wrong = topic_problems(present, partitions, actual)
            for name, problem in wrong.items():
                log.warning("topic %s %s", name, problem,
                            extra={"fields": {"topic": name, "problem": problem, "recreate": recreate_wrong}})
            if wrong and recreate_wrong:
                await admin.delete_topics(list(wrong))
                await _wait_gone(admin, list(wrong))
                missing += list(wrong)
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(n, num_partitions=partitions, replication_factor=replication,
                             topic_configs=topic_config(n))
                    for n in missing
                ])
            except TopicAlreadyExistsError:
                pass
            log.info("created topics", extra={"fields": {"topics": missing, "partitions": partitions}})
        return missing
    finally:
        await admin.close()


async def _wait_gone(admin: AIOKafkaAdminClient, names: list[str], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while set(names) & set(await admin.list_topics()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics not deleted: {names}")
        await asyncio.sleep(0.1)


async def check_topics(bootstrap: str, names: list[str], partitions: int, timeout: float = 5.0) -> dict[str, str]:
    """topic_problems() of a broker, by one all-topics metadata request (which creates nothing)."""
    probe = make_probe_consumer(bootstrap, "eldercare-topic-check")
    await asyncio.wait_for(probe.start(), timeout)
    try:
        return topic_problems(names, partitions, await asyncio.wait_for(topic_partitions(probe), timeout))
    finally:
        await probe.stop()


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
