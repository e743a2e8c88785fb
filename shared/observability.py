"""Logs as JSON lines carrying the trace id, W3C trace context, and Prometheus metrics."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
from datetime import datetime, timezone

from prometheus_client import Counter, Gauge, Histogram

from shared.privacy import mask_personal

_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)
# W3C Trace Context §3.2: version-traceid-parentid-flags, lower-case hex, all-zero ids invalid.
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent(trace_id: str | None = None) -> str:
    """A traceparent for a new span (in an existing trace when trace_id is given)."""
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def parse_traceparent(value: str | None) -> str | None:
    """The trace id of a valid traceparent header, else None."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if not match or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return match.group(1)


def continue_trace(incoming: str | None) -> str:
    """Enter a trace: the caller's one when its traceparent is valid, else a new one."""
    trace_id = parse_traceparent(incoming)
    value = new_traceparent(trace_id)
    _traceparent.set(value)
    return value


def current_traceparent() -> str | None:
    return _traceparent.get()


def current_trace_id() -> str | None:
    return parse_traceparent(_traceparent.get())


def set_traceparent(value: str | None) -> contextvars.Token:
    return _traceparent.set(value)


def reset_traceparent(token: contextvars.Token) -> None:
    _traceparent.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Callers log masked values, and whatever personal data still slips
    into a message, a field or a traceback (a query's parameters, a cell quoted in an error) is
    masked here by content: ID and phone numbers never reach the log."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": mask_personal(record.getMessage()),
        }
        trace_id = current_trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
        for key, value in getattr(record, "fields", {}).items():
            entry[key] = mask_personal(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = mask_personal(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=lambda v: mask_personal(str(v)))


class MaskingFormatter(logging.Formatter):
    """The plain-text format (LOG_JSON=false), masked by content like the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_personal(super().format(record)) or ""


def configure_logging(service: str, level: str = "INFO", as_json: bool = True) -> None:
    """Route every logger (uvicorn's too) to one stream handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(MaskingFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("aiokafka").setLevel(logging.WARNING if level.upper() != "DEBUG" else logging.DEBUG)
    # One line per request only when debugging: `eldercare serve` turns uvicorn's access log off, and
    # requests are counted and timed in /metrics; at the API's request rates the lines would cost a
    # worker's CPU and, with the county simulator posting all day, fill the disk.
    logging.getLogger("uvicorn.access").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)


# Metrics shared by every service; labels keep services apart when one registry scrapes several.
HTTP_REQUESTS = Counter("eldercare_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram(
    "eldercare_http_request_seconds", "HTTP request latency", ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_PUBLISHED = Counter("eldercare_outbox_published_total", "Outbox records published", ["service"])
OUTBOX_PENDING = Gauge("eldercare_outbox_pending", "Outbox records not yet published", ["service"])
OUTBOX_REPLAYS = Counter("eldercare_outbox_replays_total", "Replays after the broker lost data", ["service"])
EVENTS_CONSUMED = Counter("eldercare_events_consumed_total", "Events applied", ["consumer", "type"])
EVENTS_DUPLICATE = Counter("eldercare_events_duplicate_total", "Redelivered events skipped", ["consumer"])
EVENTS_DEAD_LETTERED = Counter("eldercare_events_dead_lettered_total", "Events sent to a DLQ", ["consumer"])
