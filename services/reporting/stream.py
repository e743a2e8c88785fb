"""Live deltas for dashboards: every committed fold gets the next sequence number; a client that
reconnects with the last number it saw receives what it missed, or a fresh snapshot when that is
older than the buffer."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field


@dataclass(eq=False)
class Subscription:
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=5000))
    # Set when the client fell too far behind: it gets a snapshot instead of an unbounded backlog.
    overflowed: bool = False


class Broadcaster:
    """Fan-out of deltas to subscribers, with a replay buffer of the most recent ones."""

    def __init__(self, buffer: int = 10_000) -> None:
        self.recent: deque[dict] = deque(maxlen=buffer)
        self.subscribers: set[Subscription] = set()
        self.last_seq = 0

    def publish(self, deltas: list[object]) -> None:
        for delta in deltas:
            message = delta.as_dict() if hasattr(delta, "as_dict") else delta
            self.recent.append(message)
            self.last_seq = max(self.last_seq, message["seq"])
            for sub in list(self.subscribers):
                if sub.queue.full():
                    sub.overflowed = True
                    continue
                sub.queue.put_nowait(message)

    def receive(self, delta: dict) -> None:
        """A delta from the aggregates topic, in sequence order. A repeat (the topic read again) is
        dropped; a gap (a frame lost while the broker was away) empties the replay buffer and sends
        every subscriber a fresh snapshot instead of letting it miss figures. Deltas older than the
        stream position this process started at only fill the replay buffer."""
        seq = delta["seq"]
        if self.recent and seq <= self.recent[-1]["seq"]:
            return
        if self.recent and seq != self.recent[-1]["seq"] + 1:
            self.recent.clear()
            for sub in self.subscribers:
                sub.overflowed = True  # noticed with the next frame: a snapshot follows it
        if seq <= self.last_seq:
            self.recent.append(delta)
            return
        self.publish([delta])

    def receive_snapshot(self, seq: int) -> None:
        """A snapshot frame: the stream is at `seq` at least (clients take their snapshots from the
        database, which is at least as new)."""
        if seq > self.last_seq and (not self.recent or seq > self.recent[-1]["seq"]):
            self.recent.clear()
            self.last_seq = seq

    def missed_since(self, seq: int) -> list[dict] | None:
        """Deltas after `seq`, or None when some were already dropped from the buffer (or the
        client's number is from another epoch, e.g. after a rebuild)."""
        if seq > self.last_seq:
            return None
        if not self.recent:
            return [] if seq == self.last_seq else None
        if seq < self.recent[0]["seq"] - 1:
            return None
        return [d for d in self.recent if d["seq"] > seq]

    def subscribe(self) -> Subscription:
        sub = Subscription()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    def reset(self, seq: int) -> None:
        self.recent.clear()
        self.last_seq = seq
