"""What the alerts service keeps per resident beside the registry's projection: emergency contacts
(called on an alert's escalation path; phone numbers masked unless revealed with a reason, each
reveal audited) and safe zones (geofences); an alert's notification attempts; the audit log."""

from __future__ import annotations

import re
import uuid
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Query, Request

from services.alerts import store
from services.alerts.api.deps import City, Operator
from services.alerts.api.schemas import ContactsBody, GeofenceBody
from services.alerts.domain import geofence
from services.alerts.store import rule_book
from shared.access import MAX_REASON_CHARS, MAX_REASON_HEADER_BYTES, reason_problem
from shared.auth import Principal
from shared.idcard import mask_phone
from shared.observability import current_trace_id
from shared.problems import BadRequest, NotFound, Unprocessable
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["residents"])
ERRORS = {403: {"description": "Not this role's"}, 404: {"description": "No such resident (or alert) in scope"},
          422: {"description": "Invalid field"}}
CONTACT_FIELDS = ["contacts.phone"]


async def _resident(conn, principal: Principal, resident_id: uuid.UUID):
    row = await store.resident(conn, resident_id)
    # Another county's resident answers as missing, as its alerts do.
    if row is None or not principal.may_see_county(row["county_code"]):
        raise NotFound("No such resident in this token's scope (or not yet known to the alerts service).",
                       field="resident_id")
    return row


def _reason(request: Request, reason: str | None) -> str:
    """The reason for seeing phone numbers in clear: query `reason` or the X-Access-Reason header
    (percent-encoded); 400 when missing, 422 when not a real one (the registry's rule)."""
    if not reason:
        header = request.headers.get("x-access-reason")
        if header is not None:
            if len(header) > MAX_REASON_HEADER_BYTES:
                raise Unprocessable(f"X-Access-Reason is at most {MAX_REASON_CHARS} characters.",
                                    field="X-Access-Reason")
            reason = unquote(header)
    problem = reason_problem(reason)
    if problem is not None:
        kind, message = problem
        raise (BadRequest if kind == "missing" else Unprocessable)(message, field="reason")
    return " ".join((reason or "").split())


def _contact_view(r, reveal: bool) -> dict:
    return {"position": r["position"], "name": r["name"], "relation": r["relation"],
            "phone": r["phone"] if reveal else mask_phone(r["phone"]), "updated_by": r["updated_by"],
            "updated_at": r["updated_at"]}


@router.get("/residents/{resident_id}/contacts", responses=ERRORS,
            summary="A resident's emergency contacts in calling order (phones masked unless revealed with a reason)")
async def get_contacts(resident_id: uuid.UUID, request: Request, principal: Operator, runtime: RuntimeDep,
                       reveal: bool = False,
                       reason: Annotated[str | None, Query(max_length=MAX_REASON_CHARS,
                                                           description="why (required with reveal; audited)")] = None
                       ) -> dict:
    why = _reason(request, reason) if reveal else None
    async with runtime.db.transaction() as conn:
        row = await _resident(conn, principal, resident_id)
        rows = await store.contacts(conn, resident_id)
        if why is not None:
            await store.write_audit(conn, actor=principal.subject, role=principal.role.value,
                                    county_code=row["county_code"], action="read_unmasked", resident_id=resident_id,
                                    fields=CONTACT_FIELDS, reason=why, trace_id=current_trace_id())
    return {"resident_id": str(resident_id), "revealed": why is not None,
            "contacts": [_contact_view(r, why is not None) for r in rows]}


_SEPARATORS = re.compile(r"[ \-]")


@router.put("/residents/{resident_id}/contacts", responses=ERRORS,
            summary="Set a resident's emergency contacts, in calling order (replaces the list)")
async def put_contacts(resident_id: uuid.UUID, body: ContactsBody, principal: Operator, runtime: RuntimeDep) -> dict:
    entries = [{**c.model_dump(), "phone": _SEPARATORS.sub("", c.phone)} for c in body.contacts]
    async with runtime.db.transaction() as conn:
        row = await _resident(conn, principal, resident_id)
        await store.replace_contacts(conn, resident_id, row["county_code"], entries, principal.subject)
        rows = await store.contacts(conn, resident_id)
    return {"resident_id": str(resident_id), "revealed": False, "contacts": [_contact_view(r, False) for r in rows]}


def _zone_view(zone: geofence.Zone | None) -> dict | None:
    return None if zone is None else {"lat": zone.lat, "lon": zone.lon, "radius_m": zone.radius_m,
                                      "source": zone.source, "device_id": zone.device_id}


async def _geofence_view(conn, row) -> dict:
    configured_row = await store.geofence(conn, row["resident_id"])
    configured = None if configured_row is None else geofence.Zone(
        configured_row["lat"], configured_row["lon"], configured_row["radius_m"], "configured",
        configured_row["device_id"])
    rules, version = (await rule_book(conn)).for_county(row["county_code"])
    effective = geofence.zone_for(configured, row["home_lat"], row["home_lon"], tuple(row["categories"] or ()),
                                  rules.geofence)
    state = await store.geofence_state(conn, row["resident_id"])
    return {
        "resident_id": str(row["resident_id"]),
        "configured": None if configured_row is None else {
            **_zone_view(configured), "note": configured_row["note"], "set_by": configured_row["set_by"],
            "set_at": configured_row["set_at"]},
        "home_known": row["home_lat"] is not None,
        "effective": _zone_view(effective), "rule_version": version,
        "state": None if state is None else dict(state),
    }


@router.get("/residents/{resident_id}/geofence", responses=ERRORS,
            summary="A resident's safe zone: the one set here, the home zone the rules give, and the zone state")
async def get_geofence(resident_id: uuid.UUID, principal: Operator, runtime: RuntimeDep) -> dict:
    async with runtime.db.connection() as conn:
        row = await _resident(conn, principal, resident_id)
        return await _geofence_view(conn, row)


@router.put("/residents/{resident_id}/geofence", responses=ERRORS,
            summary="Set a resident's safe zone (a circle; optionally one device's fixes only)")
async def put_geofence(resident_id: uuid.UUID, body: GeofenceBody, principal: Operator, runtime: RuntimeDep) -> dict:
    async with runtime.db.transaction() as conn:
        row = await _resident(conn, principal, resident_id)
        await store.set_geofence(conn, resident_id, row["county_code"], body.lat, body.lon, body.radius_m,
                                 body.device_id, body.note, principal.subject)
        return await _geofence_view(conn, row)


@router.delete("/residents/{resident_id}/geofence", responses=ERRORS,
               summary="Remove the zone set here (the home zone of the rules applies again, if any)")
async def delete_geofence(resident_id: uuid.UUID, principal: Operator, runtime: RuntimeDep) -> dict:
    async with runtime.db.transaction() as conn:
        row = await _resident(conn, principal, resident_id)
        if not await store.clear_geofence(conn, resident_id):
            raise NotFound("No zone is set for this resident.", field="resident_id")
        return await _geofence_view(conn, row)


@router.get("/alerts/{alert_id}/notifications", responses=ERRORS,
            summary="An alert's emergency-contact notifications: each contact tried, attempts, status, last error")
async def get_notifications(alert_id: uuid.UUID, principal: Operator, runtime: RuntimeDep) -> dict:
    async with runtime.db.connection() as conn:
        alert = await store.alert_county(conn, alert_id)
        if alert is None or not principal.may_see_county(alert["county_code"]):
            raise NotFound("No such alert in this token's scope.", field="alert_id")
        rows = await store.notifications(conn, alert_id)
    # next_attempt_at means something only while a call is still to be made.
    return {"alert_id": str(alert_id), "items": [
        {**{k: r[k] for k in ("id", "position", "name", "trigger", "status", "attempts", "last_error", "created_at",
                              "sent_at")}, "phone": mask_phone(r["phone"]),
         "next_attempt_at": r["next_attempt_at"] if r["status"] == "pending" else None}
        for r in rows]}


@router.get("/audit", summary="Who saw which resident's emergency-contact phone numbers in clear, and why")
async def audit(principal: City, runtime: RuntimeDep, resident_id: uuid.UUID | None = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    async with runtime.db.connection() as conn:
        rows = await store.audit_entries(conn, resident_id, limit)
    return {"items": [dict(r) for r in rows]}
