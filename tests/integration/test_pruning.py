"""Inbox rows, idempotency keys and ingest event claims are pruned after DEDUP_RETENTION_DAYS (the
audit log never), in small batches by one process per schema, and a redelivery within the window
is still recognised as one."""

from __future__ import annotations

import asyncio

import asyncpg
from aiokafka import TopicPartition

from services.registry.worker import PRUNE_TARGETS
from shared.db import Database, connect
from shared.idempotency import IDEMPOTENCY_DDL
from shared.messaging.consumer import EventConsumer
from shared.messaging.pruning import SHARED_TARGETS, Pruner
from tests.integration.support import COUNTS_DDL, create_schema, eventually
from tests.integration.test_backbone_delivery import TRAINING, count_handler, training_event
from tests.integration.test_consumer_pipeline import _counts, _record

RETENTION_DAYS = 14.0  # the default; OUTBOX_RETENTION_DAYS is 7
INGEST_DDL = ("CREATE TABLE ingest_events (source text NOT NULL, event_id text NOT NULL, county_code text NOT NULL, "
              "received_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (source, event_id))")
AUDIT_DDL = "CREATE TABLE audit_log (id bigserial PRIMARY KEY, at timestamptz NOT NULL, action text NOT NULL)"


def pruner(url: str, schema: str, **kw) -> Pruner:
    return Pruner(service=schema, database_url=url, schema=schema, targets=(*SHARED_TARGETS, *PRUNE_TARGETS),
                  retention_days=RETENTION_DAYS, **kw)


async def fill(url: str, schema: str, ages_days: dict[str, list[float]]) -> None:
    """Rows `age` days old in each table: inbox, idempotency_keys, ingest_events, audit_log."""
    conn = await connect(url, schema)
    try:
        for i, age in enumerate(ages_days["inbox"]):
            await conn.execute("INSERT INTO inbox (consumer, event_id, processed_at) "
                               "VALUES ('c', $1, now() - make_interval(days => $2))", f"e{i}-{age}", age)
        for i, age in enumerate(ages_days["idempotency_keys"]):
            await conn.execute("INSERT INTO idempotency_keys (actor, key, request_hash, status, body, created_at) "
                               "VALUES ('a', $1, 'h', 201, '{}', now() - make_interval(days => $2))", f"k{i}-{age}", age)
        for i, age in enumerate(ages_days["ingest_events"]):
            await conn.execute("INSERT INTO ingest_events (source, event_id, county_code, received_at) "
                               "VALUES ('county/410928', $1, '410928', now() - make_interval(days => $2))",
                               f"i{i}-{age}", age)
        for age in ages_days["audit_log"]:
            await conn.execute("INSERT INTO audit_log (at, action) VALUES (now() - make_interval(days => $1), 'read')",
                               age)
    finally:
        await conn.close()


async def ages(url: str, schema: str, table: str, column: str) -> list[int]:
    conn = await connect(url, schema)
    try:
        return [r[0] for r in await conn.fetch(
            f"SELECT extract(day FROM now() - {column})::int FROM {table} ORDER BY 1")]
    finally:
        await conn.close()


async def test_rows_past_the_retention_go_in_small_batches_and_recent_ones_and_the_audit_log_stay(
        database_url, unique):
    schema = f"t_{unique}"
    await create_schema(database_url, schema, [IDEMPOTENCY_DDL, INGEST_DDL, AUDIT_DDL])
    old, recent = [20.0] * 23 + [400.0], [0.0, 6.0, 10.0, 13.0]  # 10 and 13: past the outbox's 7 days
    await fill(database_url, schema, {"inbox": old + recent, "idempotency_keys": old + recent,
                                      "ingest_events": old + recent, "audit_log": [400.0, 20.0, 1.0]})

    deleted = await pruner(database_url, schema, batch_size=5).prune_round()

    assert deleted == {"inbox": 24, "idempotency_keys": 24, "ingest_events": 24}
    for table, column in (("inbox", "processed_at"), ("idempotency_keys", "created_at"),
                          ("ingest_events", "received_at")):
        assert await ages(database_url, schema, table, column) == [0, 6, 10, 13], table
    assert await ages(database_url, schema, "audit_log", "at") == [1, 20, 400]


async def test_a_schema_without_a_target_table_is_pruned_where_it_has_them(database_url, unique):
    schema = f"t_{unique}"
    await create_schema(database_url, schema)  # inbox only, as orders and alerts today
    await fill(database_url, schema, {"inbox": [30.0, 1.0], "idempotency_keys": [], "ingest_events": [],
                                      "audit_log": []})
    assert await pruner(database_url, schema).prune_round() == {"inbox": 1}


async def test_one_process_prunes_a_schema_at_a_time(database_url, unique):
    schema = f"t_{unique}"
    await create_schema(database_url, schema)
    await fill(database_url, schema, {"inbox": [30.0], "idempotency_keys": [], "ingest_events": [], "audit_log": []})
    holder = await connect(database_url, schema)
    try:
        await holder.execute("SELECT pg_advisory_lock(hashtext($1))", f"prune:{schema}")
        assert await pruner(database_url, schema).prune_round() is None
        assert await ages(database_url, schema, "inbox", "processed_at") == [30]
    finally:
        await holder.close()
    assert await pruner(database_url, schema).prune_round() == {"inbox": 1}


async def test_a_redelivery_within_the_window_is_still_skipped_after_pruning(database_url, bootstrap, unique):
    """An event applied ten days ago (older than the outbox keeps events, so a replay may still
    send it) is redelivered after a pruning round: its inbox row is there, it is not applied twice."""
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema, [COUNTS_DDL])
    db = Database(database_url, schema, pool_size=2)
    await db.start()
    consumer = EventConsumer(name=f"pr-{unique}", topics=[topic], handlers={TRAINING: count_handler}, pool=db.pool,
                             bootstrap=bootstrap, schema=schema)
    kept, expired = training_event("k", 1), training_event("x", 1)
    batch = {TopicPartition(topic, 0): [_record(topic, 0, kept.to_json()), _record(topic, 1, expired.to_json())]}
    try:
        await consumer.apply_batch(batch)
        async with db.pool.acquire() as conn:
            await conn.execute("UPDATE inbox SET processed_at = now() - interval '10 days' WHERE event_id = $1", kept.id)
            await conn.execute("UPDATE inbox SET processed_at = now() - interval '15 days' WHERE event_id = $1",
                               expired.id)
        assert await pruner(database_url, schema).prune_round() == {"inbox": 1}
        await consumer.apply_batch(batch)
        counts = await _counts(db)
    finally:
        await db.close()
    assert counts["k"] == (1, 1)  # within the window: recognised, skipped
    assert counts["x"] == (2, 1)  # its inbox row had expired (a redelivery that late cannot happen)
    assert consumer.duplicates_total == 1


async def test_every_service_runtime_runs_a_pruner_in_its_worker_loop(registry, settings):
    runtime = registry.app.state.runtime
    assert runtime.pruner is not None and runtime.pruner.retention_seconds == settings.dedup_retention_days * 86400
    assert {t.table for t in runtime.pruner.targets} == {"inbox", "idempotency_keys", "ingest_events"}
    assert any(t.get_name() == "registry-pruner" and not t.done() for t in runtime.tasks)
    async with runtime.db.transaction() as conn:
        await conn.execute("INSERT INTO ingest_events (source, event_id, county_code, received_at) "
                           "VALUES ('county/410928', 'pruned-by-the-loop', '410928', now() - interval '30 days')")
    loop = Pruner(service="registry", database_url=settings.database_url, schema="registry",
                  targets=runtime.pruner.targets, retention_days=settings.dedup_retention_days, interval_s=0.2)
    task = asyncio.create_task(loop.run())

    async def gone() -> bool:
        async with runtime.db.connection() as conn:
            return not await conn.fetchval("SELECT count(*) FROM ingest_events WHERE event_id = 'pruned-by-the-loop'")

    try:
        await eventually(gone, timeout=30, message="the pruner's loop deleted the expired claim")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_indexes_the_pruner_walks_exist_in_every_service_schema(registry, settings):
    from shared.migrations import upgrade_async
    from shared.settings import SERVICES

    for service in SERVICES:
        await upgrade_async(service, settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch("SELECT schemaname, indexname FROM pg_indexes WHERE indexname = ANY($1::text[])",
                                ["inbox_processed_at", "idempotency_keys_created_at", "ingest_events_received_at"])
    finally:
        await conn.close()
    found = {(r["schemaname"], r["indexname"]) for r in rows}
    assert {(s, "inbox_processed_at") for s in SERVICES} <= found
    assert {("registry", "idempotency_keys_created_at"), ("registry", "ingest_events_received_at")} <= found


async def test_a_county_repost_and_a_repeated_write_within_the_window_are_still_recognised(registry, puyang):
    """Through the registry's API: an ingest event claimed ten days ago and an Idempotency-Key
    used ten days ago survive a pruning round, so the repeat is "duplicate" / replayed; a claim
    past the retention is gone."""
    import uuid

    from tests.integration.test_registry_ingest import a_resident, event
    from tests.integration.test_registry_residents import resident_body

    runtime = registry.app.state.runtime
    rid, _ = await a_resident(registry, puyang)
    kept = event("eldercare.county.device.activity.v1", {"device_id": "DOOR-kept", "kind": "door"}, subject=rid)
    expired = event("eldercare.county.device.activity.v1", {"device_id": "DOOR-old", "kind": "door"}, subject=rid)
    assert (await registry.post("/v1/events", headers=puyang, json=[kept, expired])).json()["accepted"] == 2
    body = resident_body(living_arrangement="alone", categories=[])
    headers = {**puyang, "Idempotency-Key": str(uuid.uuid4())}
    first = await registry.post("/v1/residents", json=body, headers=headers)
    assert first.status_code == 201
    async with runtime.db.transaction() as conn:
        await conn.execute("UPDATE ingest_events SET received_at = now() - interval '10 days' WHERE event_id = $1",
                           kept["id"])
        await conn.execute("UPDATE ingest_events SET received_at = now() - interval '15 days' WHERE event_id = $1",
                           expired["id"])
        await conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '10 days' WHERE key = $1",
                           headers["Idempotency-Key"])

    deleted = await runtime.pruner.prune_round()

    assert deleted is not None and deleted["ingest_events"] >= 1
    again = (await registry.post("/v1/events", headers=puyang, json=[kept])).json()
    assert again["duplicate"] == 1 and again["accepted"] == 0
    repeat = await registry.post("/v1/residents", json=body, headers=headers)
    assert repeat.status_code == 201 and repeat.headers["idempotent-replayed"] == "true"
    assert repeat.json()["id"] == first.json()["id"]
    async with runtime.db.connection() as conn:
        assert not await conn.fetchval("SELECT count(*) FROM ingest_events WHERE event_id = $1", expired["id"])
