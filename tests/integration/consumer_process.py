"""A consumer in its own process, for the SIGKILL test: counts events per key, slowly, so a kill
lands in the middle of a batch. Usage: python -m tests.integration.consumer_process URL SCHEMA BOOTSTRAP TOPIC GROUP"""

from __future__ import annotations

import asyncio
import sys

from shared.db import Database
from shared.messaging.consumer import EventConsumer

TRAINING = "eldercare.county.training.recorded.v1"


async def slow_count(conn, event, data) -> None:
    await conn.execute(
        "INSERT INTO counts (key, n, last_seq) VALUES ($1, 1, $2) "
        "ON CONFLICT (key) DO UPDATE SET n = counts.n + 1, last_seq = EXCLUDED.last_seq",
        data.course, data.trainees,
    )
    await conn.execute("UPDATE progress SET applied = applied + 1")
    await asyncio.sleep(0.002)


async def main(url: str, schema: str, bootstrap: str, topic: str, group: str) -> None:
    db = Database(url, schema, pool_size=2)
    await db.start()
    consumer = EventConsumer(name=group, topics=[topic], handlers={TRAINING: slow_count}, pool=db.pool,
                             bootstrap=bootstrap, batch_size=500, schema=schema)
    await consumer.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
