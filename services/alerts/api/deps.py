"""The alerts service's callers: duty operators (city, county) act on alerts; a viewer reads the
timeline with personal data masked; providers and caregivers have no business here. Only the live
stream also takes the token as a query parameter (a browser's EventSource cannot send a header;
anywhere else a token in a URL would end up in logs for nothing)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from shared.auth import Principal, Role, decode_token
from shared.idcard import mask_phone
from shared.problems import Forbidden, Unauthorized
from shared.settings import get_settings

READERS = (Role.CITY, Role.COUNTY, Role.VIEWER)
OPERATORS = (Role.CITY, Role.COUNTY)


def _principal(request: Request, token: str | None) -> Principal:
    scheme, _, header = request.headers.get("authorization", "").partition(" ")
    raw = header.strip() if scheme.lower() == "bearer" and header else token
    if not raw:
        raise Unauthorized("A bearer token is required.")
    settings = getattr(request.app.state, "settings", None) or get_settings()
    return decode_token(settings, raw, "alerts")


def _reader(principal: Principal) -> Principal:
    if principal.role not in READERS:
        raise Forbidden(f"The {principal.role.value} role may not read alerts.")
    return principal


async def alert_reader(request: Request) -> Principal:
    return _reader(_principal(request, None))


async def stream_reader(request: Request, access_token: Annotated[
        str | None, Query(description="the token, for EventSource clients (no header)")] = None) -> Principal:
    return _reader(_principal(request, access_token))


async def operator(request: Request) -> Principal:
    principal = _principal(request, None)
    if principal.role not in OPERATORS:
        raise Forbidden(f"The {principal.role.value} role may not act on alerts.")
    return principal


async def city_only(request: Request) -> Principal:
    principal = _principal(request, None)
    if principal.role != Role.CITY:
        raise Forbidden("Only the city may do this (the rules, the audit log).")
    return principal


Reader = Annotated[Principal, Depends(alert_reader)]
StreamReader = Annotated[Principal, Depends(stream_reader)]
Operator = Annotated[Principal, Depends(operator)]
City = Annotated[Principal, Depends(city_only)]


def in_scope(principal: Principal, county_code: str) -> bool:
    """A viewer reads every county's timeline (masked); an operator only its scope."""
    return principal.role == Role.VIEWER or principal.may_see_county(county_code)


def mask_name(name: str | None) -> str | None:
    """周秀珍 → 周**: enough for a viewer to tell alerts apart, not to identify anyone."""
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


def _contact(row) -> str | None:
    """The first emergency contact as an operator sees it with the alert: name, relation, masked
    phone (the number in clear only through /v1/residents/{id}/contacts with a reason, audited)."""
    if row["contact_name"] is None:
        return row["emergency_contact"]
    relation = f"（{row['contact_relation']}）" if row["contact_relation"] else ""
    return f"{row['contact_name']}{relation} {mask_phone(row['contact_phone'])}"


def present(row, principal: Principal) -> dict:
    """An alert as the caller may see it: operators get the resident's name, village and emergency
    contact; a viewer gets the name masked and no contact or location."""
    out = {
        "id": str(row["id"]), "county_code": row["county_code"],
        "resident_id": str(row["resident_id"]) if row["resident_id"] else None, "device_id": row["device_id"],
        "cause": row["cause"], "severity": row["severity"], "status": row["status"], "level": row["level"],
        "count": row["count"], "first_seen_at": row["first_seen_at"], "last_seen_at": row["last_seen_at"],
        "raised_at": row["raised_at"], "acknowledged_at": row["acknowledged_at"],
        "acknowledged_by": row["acknowledged_by"], "dispatched_at": row["dispatched_at"], "dispatch": row["dispatch"],
        "resolved_at": row["resolved_at"], "resolved_by": row["resolved_by"], "resolution": row["resolution"],
        "resolution_note": row["resolution_note"], "escalate_at": row["escalate_at"],
        "escalated_at": row["escalated_at"], "silenced": row["silence_id"] is not None,
        "silence_id": str(row["silence_id"]) if row["silence_id"] else None, "rule_version": row["rule_version"],
        "incident_id": str(row["incident_id"]), "details": dict(row["details"] or {}),
    }
    operator_view = principal.role in OPERATORS
    out["resident"] = None if row["resident_name"] is None else {
        "name": row["resident_name"] if operator_view else mask_name(row["resident_name"]),
        "township": row["township"], "village": row["village"] if operator_view else None,
        "living_arrangement": row["living_arrangement"],
        "emergency_contact": _contact(row) if operator_view else None,
    }
    if not operator_view:
        for key in ("lat", "lon"):
            out["details"].pop(key, None)
        out["dispatch"] = [{k: v for k, v in d.items() if k != "note"} for d in out["dispatch"]]
        out["resolution_note"] = None
    return out
