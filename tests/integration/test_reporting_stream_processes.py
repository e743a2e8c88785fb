"""Aggregates anyone can subscribe to: one folding worker publishes on eldercare.reporting.aggregates.v1,
and two reporting API processes (no folding of their own) stream the same frames, with the same
sequence numbers; a client resumes with Last-Event-ID on the other process."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess

import asyncpg
import httpx
import orjson

from shared.db import asyncpg_dsn, with_database
from tests.integration.support import eventually, stop_processes
from tests.integration.test_consumer_crash import eldercare_process


async def sse_frames(client: httpx.AsyncClient, token: str, out: list[tuple[str, int, dict]],
                     last_event_id: int | None = None) -> None:
    """Append (event, id, data) for every frame of /v1/stream until cancelled."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with client.stream("GET", "/v1/stream", headers=headers, timeout=None) as response:
        assert response.status_code == 200
        frame: dict[str, str] = {}
        async for line in response.aiter_lines():
            if not line:
                if "data" in frame:
                    out.append((frame.get("event", ""), int(frame.get("id", -1)), orjson.loads(frame["data"])))
                frame = {}
            elif not line.startswith(":") and ":" in line:
                name, _, value = line.partition(":")
                frame[name] = value.strip()


async def test_two_api_processes_stream_the_folding_workers_frames_and_resume_on_either(
        pg_server_url, private_broker, unique, tmp_path):
    from eldercare.infra import free_port, wait_for_port
    from shared.auth import issue_token
    from shared.settings import PlatformSettings
    from tests.conftest import fresh_id_number

    database = f"eldercare_test_stream_{unique}_{os.getpid()}"
    admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    url = with_database(pg_server_url, database)
    registry_port, api_ports = free_port(), [free_port(), free_port()]
    env = {**os.environ, "DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": private_broker.bootstrap,
           "REGISTRY_PORT": str(registry_port), "REGISTRY_WORKERS": "1", "RUN_WORKERS_IN_API": "false",
           "KAFKA_PARTITIONS": "2", "RELAY_CHECK_INTERVAL_S": "0.5", "LOG_JSON": "false",
           "ELDERCARE_STATE_DIR": str(tmp_path), "JWT_SECRET": secrets.token_urlsafe(48)}
    settings = PlatformSettings(jwt_secret=env["JWT_SECRET"])
    county = issue_token(settings, "county", county="410928")
    viewer = issue_token(settings, "viewer")
    processes: list[subprocess.Popen] = []

    def start(args: list[str], extra: dict | None = None) -> subprocess.Popen:
        process = eldercare_process(args, {**env, **(extra or {})}, f"test-stream-{unique}-{'-'.join(args)}.log")
        processes.append(process)
        return process

    try:
        start(["serve", "registry"])
        start(["worker", "registry"])
        start(["worker", "reporting"])  # the one folding worker
        for port in api_ports:
            start(["serve", "reporting"], {"REPORTING_PORT": str(port)})
        for port in (registry_port, *api_ports):
            await asyncio.to_thread(wait_for_port, port, timeout=90)
        frames: list[list] = [[], []]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{registry_port}", timeout=30) as registry, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_ports[0]}") as a, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_ports[1]}") as b:
            readers = [asyncio.create_task(sse_frames(c, viewer, out)) for c, out in zip((a, b), frames)]

            async def register(n: int) -> None:
                for _ in range(n):
                    body = {"name": "王秀英", "id_number": fresh_id_number(), "county_code": "410928",
                            "township": "城关镇", "village": "东街社区", "living_arrangement": "alone"}
                    response = await registry.post("/v1/residents", json=body,
                                                   headers={"Authorization": f"Bearer {county}"})
                    assert response.status_code == 201, response.text

            def deltas(out: list) -> dict[int, dict]:
                return {i: d for e, i, d in out if e == "delta"}

            async def both_streamed(n: int):
                async def check() -> bool:
                    return all(len(deltas(f)) >= n for f in frames)
                return check

            # The worker's first fold (after its group join), then registrations spaced out, so it
            # folds them in several batches (several deltas).
            await register(1)
            await eventually(await both_streamed(1), timeout=90, message="both API processes stream a delta")
            for _ in range(10):
                await register(2)
                await asyncio.sleep(0.4)
            await eventually(await both_streamed(5), timeout=90, message="both API processes stream deltas")

            async def same_frames() -> bool:
                da, db = deltas(frames[0]), deltas(frames[1])
                return max(da, default=0) == max(db, default=-1)

            await eventually(same_frames, timeout=60, message="both processes at the same sequence number")
            da, db = deltas(frames[0]), deltas(frames[1])
            common = sorted(set(da) & set(db))
            assert len(common) >= 5
            assert all(da[i] == db[i] for i in common)  # the same frames, the same numbers
            assert common == list(range(common[0], common[-1] + 1))  # in sequence, none missing

            # A client of process A resumes on process B from a number A gave it: B sends what came after.
            resume_from = common[len(common) // 2]
            resumed: list = []
            reader = asyncio.create_task(sse_frames(b, viewer, resumed, last_event_id=resume_from))

            async def resumed_all() -> bool:
                return sum(1 for e, *_ in resumed if e == "delta") >= common[-1] - resume_from

            await eventually(resumed_all, timeout=30, message="process B replays what came after the number")
            assert resumed[0][0] == "delta"  # no snapshot: B had the frames from the topic
            assert [(i, d) for e, i, d in resumed if e == "delta"][:common[-1] - resume_from] == [
                (i, da[i]) for i in range(resume_from + 1, common[-1] + 1)]
            for task in (*readers, reader):
                task.cancel()
            await asyncio.gather(*readers, reader, return_exceptions=True)
    finally:
        stop_processes(processes)
        admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
