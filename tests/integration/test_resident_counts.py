"""The registry's recount (GET /v1/stats/residents, SQL generated from shared/buckets.py) gives the
counts the fold's rules (shared.buckets.resident_buckets) give for the same rows."""

from __future__ import annotations

from collections import Counter

from services.registry.store import STATS_SQL
from shared.buckets import resident_buckets
from shared.db import connect
from tests.conftest import fresh_id_number, token_for


async def test_the_registry_recount_equals_the_fold_rules_applied_to_its_rows(registry, settings):
    puyang = token_for(settings, "county", "410928")
    base = {"name": "孙玉兰", "county_code": "410928", "township": "城关镇", "village": "东街社区"}
    for extra in ({"living_arrangement": "alone", "categories": ["dementia", "low_income"], "ability_level": 3},
                  {"living_arrangement": "with_family", "family_doctor_contract": True}):
        response = await registry.post("/v1/residents", headers=puyang,
                                       json=base | extra | {"id_number": fresh_id_number()})
        assert response.status_code == 201, response.text
    conn = await connect(settings.database_url, "registry")
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch("SELECT county_code, status, birth_date, gender, living_arrangement, "
                                    "ability_level, categories, family_bed, family_doctor_contract, township "
                                    "FROM residents")
            counted = await conn.fetch(STATS_SQL)
    finally:
        await conn.close()
    expected = Counter((r["county_code"], dim, bucket) for r in rows for dim, bucket in resident_buckets(_Row(r)))
    assert {(r["county_code"], r["dim"], r["bucket"]): r["n"] for r in counted} == dict(expected)
    assert {dim for _, dim, _ in expected} >= {"status", "birth_month", "gender", "ability_level", "category",
                                               "family_doctor", "township"}

    city = (await registry.get("/v1/stats/residents", headers=token_for(settings, "city"))).json()["counts"]
    assert city["410928"]["category"]["dementia"] >= 1
    assert city["city"]["status"]["active"] >= city["410928"]["status"]["active"]


class _Row:
    """A residents row read by attribute, as the fold reads a snapshot."""

    def __init__(self, record) -> None:
        self.__dict__.update(dict(record))
        self.categories = tuple(record["categories"] or ())
