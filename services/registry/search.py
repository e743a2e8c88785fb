"""Resident search: filters, an ID-number lookup carried in the body (never in a URL), cursor
pagination and a count. The query is built from fixed fragments; values are always parameters."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import date

import asyncpg

from services.registry.store import RESIDENT_COLUMNS
from shared.auth import Principal, Role
from shared.problems import BadRequest, Forbidden


@dataclass(slots=True)
class SearchQuery:
    county_code: str | None = None
    township: str | None = None
    village: str | None = None
    category: str | None = None
    living_arrangement: str | None = None
    ability_levels: list[int] = field(default_factory=list)
    age_min: int | None = None
    age_max: int | None = None
    status: str | None = None
    gender: str | None = None
    name_prefix: str | None = None
    id_number: str | None = None
    limit: int = 50
    cursor: str | None = None
    with_total: bool = True


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (ValueError, TypeError):
        raise BadRequest("The cursor is not one this API gave out.", field="cursor") from None


def _years_before(today: date, years: int) -> date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


def build_where(principal: Principal, q: SearchQuery, today: date) -> tuple[list[str], list]:
    """WHERE clauses and their parameters; a county token is confined to its county."""
    clauses: list[str] = []
    params: list = []

    def add(sql: str, value) -> None:
        params.append(value)
        clauses.append(sql.replace("?", f"${len(params)}"))

    county = q.county_code
    if principal.role == Role.COUNTY:
        if county and county != principal.county:
            raise Forbidden("This token's scope does not cover that county.", field="county_code")
        county = principal.county
    elif principal.role != Role.CITY:
        raise Forbidden(f"The {principal.role.value} role may not search residents.")
    if county:
        add("county_code = ?", county)
    if q.township:
        add("township = ?", q.township)
    if q.village:
        add("village = ?", q.village)
    if q.category:
        add("categories @> ARRAY[?]::text[]", q.category)
    if q.living_arrangement:
        add("living_arrangement = ?", q.living_arrangement)
    if q.ability_levels:
        add("ability_level = ANY(?::smallint[])", q.ability_levels)
    if q.age_min is not None:
        add("birth_date <= ?", _years_before(today, q.age_min))
    if q.age_max is not None:
        add("birth_date > ?", _years_before(today, q.age_max + 1))
    if q.status:
        add("status = ?", q.status)
    if q.gender:
        add("gender = ?", q.gender)
    if q.name_prefix:
        add("name LIKE ?", q.name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    if q.id_number:
        add("id_number = ?", q.id_number)
    return clauses, params


async def search(conn: asyncpg.Connection, principal: Principal, q: SearchQuery,
                 today: date) -> tuple[list[asyncpg.Record], str | None, int | None]:
    clauses, params = build_where(principal, q, today)
    total = None
    if q.with_total:
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        total = await conn.fetchval(f"SELECT count(*) FROM residents{where}", *params)
    page_clauses, page_params = list(clauses), list(params)
    if q.cursor:
        page_params.append(decode_cursor(q.cursor))
        page_clauses.append(f"id > ${len(page_params)}")
    where = " WHERE " + " AND ".join(page_clauses) if page_clauses else ""
    page_params.append(q.limit + 1)
    # The page's ids come from an index-only scan of the covering index (filters evaluated on
    # index tuples); only the rows shown are read from the table.
    rows = await conn.fetch(
        f"SELECT {RESIDENT_COLUMNS} FROM residents WHERE id = ANY(ARRAY("
        f"SELECT id FROM residents{where} ORDER BY id LIMIT ${len(page_params)})) ORDER BY id", *page_params
    )
    next_cursor = None
    if len(rows) > q.limit:
        rows = rows[: q.limit]
        next_cursor = encode_cursor(rows[-1]["id"])
    return rows, next_cursor, total
