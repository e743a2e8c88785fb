"""Trace context (W3C traceparent) and JSON logs."""

import json
import logging

from shared.observability import (
    JsonFormatter, continue_trace, current_trace_id, new_traceparent, parse_traceparent, set_traceparent,
)


def test_valid_traceparent_continues_the_callers_trace():
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    value = continue_trace(incoming)
    assert parse_traceparent(value) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert value != incoming  # a new span id in the same trace


def test_invalid_or_all_zero_traceparent_starts_a_new_trace():
    for bad in ("garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", None, ""):
        assert parse_traceparent(bad) is None
        assert parse_traceparent(continue_trace(bad)) is not None


def test_log_lines_are_json_with_the_trace_id():
    set_traceparent(new_traceparent("ab" * 16))
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    line = json.loads(JsonFormatter("registry").format(record))
    assert line["msg"] == "hello world"
    assert line["trace_id"] == "ab" * 16 == current_trace_id()
    assert line["service"] == "registry"
