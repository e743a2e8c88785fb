"""A lean open-loop HTTP/1.1 load generator (keep-alive connections, raw asyncio streams). httpx
costs about a millisecond of client CPU per request, which on a 2-core machine would measure the
client rather than the server; this costs a few tens of microseconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import urlsplit


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        status_line = await self.reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:].strip())
        if length:
            await self.reader.readexactly(length)
        return status


def build_request(method: str, host: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def open_loop_http(base_url: str, rate: float, seconds: float, make: Callable[[], bytes],
                         connections: int = 64) -> tuple[list[float], int]:
    """Requests at a fixed rate (latency counted from when each was due, so queueing shows);
    returns latencies in ms and the number of non-2xx answers or failures."""
    parts = urlsplit(base_url)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        pool.put_nowait(Connection(reader, writer))
    latencies: list[float] = []
    errors = 0

    async def one(due: float, raw: bytes) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            status = await conn.request(raw)
            if not 200 <= status < 300:
                errors += 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors += 1
        finally:
            pool.put_nowait(conn)
        latencies.append((time.perf_counter() - due) * 1000)

    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, make())))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().writer.close()
    return latencies, errors
