"""The simulator's calendar: a simulated clock that runs `compression` times faster than the real
one (1 = real time, what `make up` uses), a day/night rhythm, and rates taken from the city's
yearly figures, so that after a day of `make up` every figure on the dashboard is still plausible
(a year's family beds take a year, not an hour).

Pure functions and a small clock object; nothing here talks to a service."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

CITY_TZ = timezone(timedelta(hours=8))  # Puyang keeps Beijing time all year

# How busy each hour of the day is, relative to the day's mean (normalised below): quiet nights,
# a morning peak (meals, visits, doctor rounds), a smaller afternoon one, an early evening.
_HOURLY = (0.15, 0.1, 0.1, 0.1, 0.15, 0.4, 0.9, 1.5, 1.9, 2.0, 1.8, 1.6,
           1.1, 1.0, 1.4, 1.6, 1.5, 1.3, 1.0, 0.8, 0.6, 0.4, 0.3, 0.2)
HOURLY_ACTIVITY = tuple(h * 24 / sum(_HOURLY) for h in _HOURLY)
SECONDS_PER_YEAR = 365 * 86400
SECONDS_PER_DAY = 86400


def activity(hour: float) -> float:
    """The rhythm at a (fractional) hour of the local day, interpolated between whole hours; its
    mean over a day is 1."""
    h = hour % 24
    low = int(h)
    share = h - low
    return HOURLY_ACTIVITY[low] * (1 - share) + HOURLY_ACTIVITY[(low + 1) % 24] * share


def expected(per_year: float, seconds_simulated: float, hour: float, rhythm: bool = True) -> float:
    """How many of something that happens `per_year` times a year fall into `seconds_simulated`
    of simulated time at `hour` (with the day's rhythm unless it is a round-the-clock thing)."""
    return per_year * seconds_simulated / SECONDS_PER_YEAR * (activity(hour) if rhythm else 1.0)


def draw(mean: float, rng: random.Random) -> int:
    """A Poisson count with this mean (Knuth's method for small means, normal beyond)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass
class SimClock:
    """Simulated time: starts at `start` (default: the real local time now) and runs `compression`
    times faster than the real monotonic clock."""

    compression: float = 1.0
    start: datetime | None = None
    _real_start: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.compression <= 0:
            raise ValueError("compression must be positive")
        if self.start is None:
            self.start = datetime.now(CITY_TZ)

    def restart(self) -> None:
        """Start the simulated day from `start` again now (after the simulator's setup)."""
        self._real_start = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._real_start) * self.compression)

    def hour(self) -> float:
        now = self.now()
        return now.hour + now.minute / 60 + now.second / 3600

    def day(self) -> int:
        """Which simulated day this is (1 on the first)."""
        return (self.now().date() - self.start.date()).days + 1

    def real_seconds(self, simulated_seconds: float) -> float:
        """How long a simulated span takes in real time."""
        return simulated_seconds / self.compression

    def label(self) -> str:
        speed = "real time" if self.compression == 1 else f"×{self.compression:g}"
        return f"day {self.day()} {self.now():%H:%M} ({speed})"
