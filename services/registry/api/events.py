"""The county ingest gateway: `POST /v1/events` (a JSON array or NDJSON of up to 1,000 CloudEvents)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.registry.domain.ingest import MAX_EVENTS, valid_batch
from services.registry.ingest import ingest_batch
from services.registry.api.residents import known_counties
from shared.auth import CurrentPrincipal, Role
from shared.problems import BadRequest, Forbidden, PayloadTooLarge, Unprocessable
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["ingest"])
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")


def parse_body(raw: bytes, content_type: str) -> list:
    """The posted events (a JSON array, one object, or one JSON object per line): typed CloudEvents
    when every one passes its schema, else the parsed JSON values, for check_event to explain."""
    if not raw.strip():
        raise Unprocessable("The body is empty: post a JSON array of CloudEvents.", field="body")
    ndjson = content_type.split(";")[0].strip().lower() in NDJSON_TYPES
    typed = valid_batch(_as_array(raw) if ndjson else raw)
    if typed is not None:
        return typed
    return _parse_lines(raw) if ndjson else _parse_json(raw)


def _as_array(ndjson: bytes) -> bytes:
    # A JSON text holds no raw newline outside whitespace, so the lines joined by commas are an
    # array; a blank or broken line makes it invalid and the body is parsed line by line instead.
    return b"[" + ndjson.strip().replace(b"\n", b",") + b"]"


def _parse_lines(raw: bytes) -> list:
    events = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if line.strip():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                raise BadRequest(f"Line {number} is not valid JSON.", field=f"body[line {number}]") from None
    return events


def _parse_json(raw: bytes) -> list:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON ({exc}).", field="body") from None
    if isinstance(parsed, dict):
        return [parsed]
    if not isinstance(parsed, list):
        raise Unprocessable("Post a JSON array of CloudEvents (or NDJSON).", field="body")
    return parsed


@router.post(
    "/events",
    summary="County platforms post their events (up to 1,000 per request)",
    responses={200: {"description": "Per event: accepted, duplicate or rejected with the reason"},
               400: {"description": "Not JSON"}, 403: {"description": "Outside the caller's county"},
               413: {"description": "More than 1,000 events or body too large"},
               422: {"description": "Every event was rejected"}},
)
async def post_events(request: Request, principal: CurrentPrincipal, runtime: RuntimeDep) -> Response:
    if principal.role not in (Role.COUNTY, Role.CITY):
        raise Forbidden(f"The {principal.role.value} role may not post county events.")
    events = parse_body(await request.body(), request.headers.get("content-type", "application/json"))
    if not events:
        raise Unprocessable("The body holds no events: post a JSON array of CloudEvents.", field="body")
    if len(events) > MAX_EVENTS:
        raise PayloadTooLarge(f"{len(events)} events in one request; post at most {MAX_EVENTS}.", field="body")
    async with runtime.db.transaction() as conn:
        verdicts = await ingest_batch(conn, principal, events, known_counties(), runtime.settings.jwt_secret)
    results = [v.as_dict() for v in verdicts]
    counts = {s: sum(1 for v in verdicts if v.status == s) for s in ("accepted", "duplicate", "rejected")}
    if counts["rejected"] == len(verdicts):
        first = verdicts[0]
        problem_cls = Forbidden if any(v.forbidden for v in verdicts) else Unprocessable
        raise problem_cls(f"No event was accepted. Event 0: {first.reason}", field=first.field,
                          results=results, **counts)
    # orjson straight to bytes: the stdlib encoder behind JSONResponse was a visible share of a batch.
    return Response(orjson.dumps({**counts, "results": results}), media_type="application/json")
