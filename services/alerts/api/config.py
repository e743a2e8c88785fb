"""Rules (city-edited, per-county overrides, versioned), silences and webhook subscriptions."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import ValidationError

from services.alerts import store
from services.alerts.api.deps import City, Operator, Reader
from services.alerts.api.schemas import RulesBody, SilenceBody, SubscriptionBody
from services.alerts.domain.rules import Rules, merge
from services.alerts.domain.webhooks import new_secret
from shared.auth import Principal, Role
from shared.problems import Conflict, Forbidden, NotFound, Unprocessable
from shared.regions import load_counties
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["configuration"])
MAX_SILENCE = timedelta(days=30)


def _known_county(code: str, field: str = "county_code") -> None:
    if code not in load_counties():
        raise Unprocessable(f"'{code}' is not a county code of this city.", field=field)


# ------------------------------------------------------------------ rules

def _rule_view(row) -> dict | None:
    return None if row is None else {"scope": row["scope"], "version": row["version"], "rules": row["body"],
                                     "created_by": row["created_by"], "created_at": row["created_at"],
                                     "note": row["note"]}


def _invalid(exc: ValidationError) -> Unprocessable:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "rules"
    return Unprocessable(f"rules.{where}: {err.get('msg')}", field=f"rules.{where}")


@router.get("/rules", summary="The city's rules in force and every county's override, with versions")
async def get_rules(principal: Reader, runtime: RuntimeDep, county_code: Annotated[
        str | None, Query(pattern=r"^\d{6}$", description="also show the merged rules in force there")] = None) -> dict:
    async with runtime.db.connection() as conn:
        rows = await store.latest_rules_per_scope(conn)
    latest = {r["scope"]: r for r in rows}
    out = {"city": _rule_view(latest["city"]),
           "counties": {s: _rule_view(r) for s, r in sorted(latest.items()) if s != "city"}}
    if county_code:
        override = latest.get(county_code)
        merged = merge(latest["city"]["body"], override["body"]) if override else latest["city"]["body"]
        version = f"city:{latest['city']['version']}" + (f"+{county_code}:{override['version']}" if override else "")
        out["effective"] = {"county_code": county_code, "version": version,
                            "rules": Rules.model_validate(merged).model_dump(mode="json")}
    return out


@router.get("/rules/history", summary="Every version of a scope's rules")
async def rules_history(principal: Reader, runtime: RuntimeDep,
                        scope: Annotated[str, Query(pattern=r"^(city|\d{6})$")] = "city") -> dict:
    async with runtime.db.connection() as conn:
        rows = await store.rules_history(conn, scope)
    return {"scope": scope, "versions": [_rule_view(r) for r in rows]}


async def _save(runtime, principal: Principal, scope: str, body: RulesBody, validate) -> dict:
    async with runtime.db.transaction() as conn:
        await store.lock_rules(conn, scope)
        current = await store.latest_rules(conn, scope)
        version = current["version"] if current else 0
        if body.base_version is not None and body.base_version != version:
            raise Conflict(f"The {scope} rules are at version {version}, not {body.base_version}; reload and retry.",
                           field="base_version")
        validate(conn, body.rules)
        row = await store.insert_rules(conn, scope, version + 1, body.rules, principal.subject, body.note)
    return _rule_view(row)


@router.put("/rules", summary="A new version of the city's rules (city only)",
            responses={409: {"description": "base_version is stale"}, 422: {"description": "Invalid rule"}})
async def put_city_rules(body: RulesBody, principal: City, runtime: RuntimeDep) -> dict:
    def validate(conn, rules: dict) -> None:
        try:
            body.rules = Rules.model_validate(rules).model_dump(mode="json")
        except ValidationError as exc:
            raise _invalid(exc) from None

    return await _save(runtime, principal, "city", body, validate)


@router.put("/rules/counties/{code}", summary="A new version of a county's override (city only); merged onto "
                                              "the city's rules key by key",
            responses={409: {"description": "base_version is stale"}, 422: {"description": "Invalid rule"}})
async def put_county_rules(code: str, body: RulesBody, principal: City, runtime: RuntimeDep) -> dict:
    _known_county(code, "code")
    async with runtime.db.connection() as conn:
        city = (await store.latest_rules(conn, "city"))["body"]
    try:
        Rules.model_validate(merge(city, body.rules))
    except ValidationError as exc:
        raise _invalid(exc) from None
    return await _save(runtime, principal, code, body, lambda conn, rules: None)


# ------------------------------------------------------------------ silences

def _silence_view(r) -> dict:
    return {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in dict(r).items()}


@router.get("/silences", summary="Silences in scope (active unless all=true)")
async def list_silences(principal: Reader, runtime: RuntimeDep, all: bool = False) -> dict:
    county = principal.county if principal.role == Role.COUNTY else None
    async with runtime.db.connection() as conn:
        rows = await store.silences(conn, county, all)
    return {"items": [_silence_view(r) for r in rows]}


@router.post("/silences", status_code=201, summary="Mute a cause for a resident, device or county until an expiry",
             responses={403: {"description": "Another county"}, 422: {"description": "Invalid field"}})
async def create_silence(body: SilenceBody, principal: Operator, runtime: RuntimeDep) -> dict:
    principal.require_county(body.county_code)
    _known_county(body.county_code)
    now = datetime.now(timezone.utc)
    starts = body.starts_at or now
    if body.expires_at.tzinfo is None or starts.tzinfo is None:
        raise Unprocessable("Times need a UTC offset.", field="expires_at")
    if body.expires_at <= max(starts, now):
        raise Unprocessable("expires_at must be in the future and after starts_at.", field="expires_at")
    if body.expires_at - starts > MAX_SILENCE:
        raise Unprocessable("A silence lasts at most 30 days.", field="expires_at")
    if body.cause is None and body.resident_id is None and body.device_id is None:
        raise Unprocessable("Name a cause, a resident or a device: a whole county is never muted.", field="cause")
    async with runtime.db.transaction() as conn:
        row = await store.insert_silence(conn, uuid.uuid4(), body.county_code, body.cause, body.resident_id,
                                         body.device_id, body.owner, body.reason, starts, body.expires_at,
                                         principal.subject)
    return _silence_view(row)


@router.delete("/silences/{silence_id}", summary="End a silence now (kept, marked revoked)",
               responses={404: {"description": "No such silence in scope"}})
async def revoke_silence(silence_id: uuid.UUID, principal: Operator, runtime: RuntimeDep) -> dict:
    async with runtime.db.transaction() as conn:
        row = await store.silence_county(conn, silence_id)
        if row is None or not principal.may_see_county(row["county_code"]):
            raise NotFound("No such silence in this token's scope.", field="silence_id")
        row = await store.revoke_silence(conn, silence_id, principal.subject)
    return _silence_view(row)


# ------------------------------------------------------------------ webhook subscriptions

def _sub_view(r, stats=None, secret: str | None = None) -> dict:
    out = {"id": str(r["id"]), "url": r["url"], "county_code": r["county_code"], "severities": r["severities"],
           "created_by": r["created_by"], "created_at": r["created_at"], "active": r["active"]}
    if secret is not None:
        out["secret"] = secret  # shown once, at creation
    if stats is not None:
        out["deliveries"] = stats
    return out


def _sub_scope(principal: Principal, county_code: str | None) -> None:
    if principal.role == Role.COUNTY and county_code != principal.county:
        raise Forbidden("A county token subscribes to its own county only.", field="county_code")


@router.post("/subscriptions", status_code=201, summary="A webhook for alert steps (Standard Webhooks signatures)",
             responses={403: {"description": "Another county"}, 422: {"description": "Invalid field"}})
async def create_subscription(body: SubscriptionBody, principal: Operator, runtime: RuntimeDep) -> dict:
    _sub_scope(principal, body.county_code)
    if body.county_code:
        _known_county(body.county_code)
    bad = set(body.severities) - {"critical", "warning"}
    if bad:
        raise Unprocessable(f"unknown severity {sorted(bad)[0]!r}", field="severities")
    secret = body.secret or new_secret()
    async with runtime.db.transaction() as conn:
        row = await store.insert_subscription(conn, uuid.uuid4(), str(body.url), body.county_code,
                                              sorted(set(body.severities)), secret, principal.subject)
    return _sub_view(row, secret=secret)


@router.get("/subscriptions", summary="Webhook subscriptions in scope with delivery counts")
async def list_subscriptions(principal: Operator, runtime: RuntimeDep) -> dict:
    county = principal.county if principal.role == Role.COUNTY else None
    async with runtime.db.connection() as conn:
        rows = await store.subscriptions(conn, county)
        stats = await store.delivery_counts(conn, [r["id"] for r in rows])
    return {"items": [_sub_view(r, stats[r["id"]]) for r in rows]}


async def _own_subscription(conn, principal: Principal, subscription_id: uuid.UUID):
    row = await store.subscription(conn, subscription_id)
    if row is None or (principal.role == Role.COUNTY and row["county_code"] != principal.county):
        raise NotFound("No such subscription in this token's scope.", field="subscription_id")
    return row


@router.get("/subscriptions/{subscription_id}/deliveries", summary="Deliveries of a subscription (failures and "
                                                                    "dead letters with their last error)")
async def list_deliveries(subscription_id: uuid.UUID, principal: Operator, runtime: RuntimeDep,
                          status: Literal["pending", "delivered", "dead"] | None = None,
                          limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    async with runtime.db.connection() as conn:
        await _own_subscription(conn, principal, subscription_id)
        rows = await store.deliveries(conn, subscription_id, status, limit)
    return {"items": [dict(r) for r in rows]}


@router.delete("/subscriptions/{subscription_id}", summary="Stop a subscription (its deliveries stay visible)")
async def delete_subscription(subscription_id: uuid.UUID, principal: Operator, runtime: RuntimeDep) -> dict:
    async with runtime.db.transaction() as conn:
        await _own_subscription(conn, principal, subscription_id)
        row = await store.stop_subscription(conn, subscription_id)
    return _sub_view(row)
