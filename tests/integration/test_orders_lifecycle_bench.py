"""`eldercare bench orders --part lifecycle`, small: orders driven through their whole lifecycle by
eight concurrent callers (the same use cases the API runs), then reconciled to the fen — and the
reconciliation shown to catch a fen out of place. On a database of the test's own."""

from __future__ import annotations

import asyncio
import os

import asyncpg

from shared.db import _init_connection, asyncpg_dsn, with_database


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def test_a_thousand_orders_through_their_lifecycle_reconcile_and_a_fen_out_of_place_is_caught(pg_server_url):
    from bench.orders_lifecycle import bench_lifecycle

    database = f"eldercare_test_{os.getpid()}_life"
    asyncio.run(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    asyncio.run(_admin(pg_server_url, f'CREATE DATABASE "{database}"'))
    url = with_database(pg_server_url, database)
    try:
        result = asyncio.run(bench_lifecycle(url, orders=1000, residents=1500, workers=8, raw_sample=200))
        checks = result["checks"]
        assert checks["reconciled"], checks
        assert checks["orders"] == 1000 and result["raw_orders_per_s"] > 0
        # Every path was taken: the scheduler's, the refusals, exceptions confirmed and left open.
        assert {"cancelled", "completed", "expired", "no_show", "rated", "rejected"} <= set(checks["states"])
        assert result["steps"]["confirm"]["n"] > 0 and result["steps"]["explain"]["n"] > result["steps"]["confirm"]["n"]
        assert checks["orders_with_a_source_out_of_budget"] > 0  # a tight budget ran out; never overdrawn
        assert checks["statement_totals"]["orders"] < 1000 - sum(
            checks["states"].get(s, 0) for s in ("cancelled", "expired", "no_show", "rejected"))

        found = asyncio.run(_each_tampering(url))
        assert [f["reconciled"] for f in found] == [False, False, False]
        assert found[0]["unbalanced_orders"] == 1
        assert found[1]["budget_mismatches"] == 1
        assert found[2]["entitlement_mismatches"] == 1
    finally:
        asyncio.run(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


async def _each_tampering(url: str) -> list[dict]:
    """The reconciliation after one fen is moved, once per kind of record, each change rolled back."""
    from bench.orders_lifecycle import reconcile
    from shared.regions import load_counties

    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"search_path": "orders"})
    await _init_connection(conn)
    counties = list(load_counties())
    found = []
    try:
        for sql in ("UPDATE orders SET personal_fen = personal_fen + 1 WHERE id = "
                    "(SELECT id FROM orders WHERE settlement_month IS NULL LIMIT 1)",
                    "UPDATE budget_spend SET spent_fen = spent_fen + 1 WHERE ctid = "
                    "(SELECT ctid FROM budget_spend WHERE spent_fen > 0 LIMIT 1)",
                    "UPDATE entitlement_usage SET used_fen = used_fen - 1 WHERE ctid = "
                    "(SELECT ctid FROM entitlement_usage WHERE used_fen > 0 LIMIT 1)"):
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute(sql)
                found.append(await reconcile(conn, counties))
            finally:
                await tx.rollback()
    finally:
        await conn.close()
    return found
