"""Bad input never reaches PostgreSQL as a 500: text it cannot store, made-up cursors, unbounded work."""

from __future__ import annotations

import uuid

from tests.integration.test_registry_import import csv_bytes, import_file, person
from tests.integration.test_registry_residents import register, resident_body


async def test_a_nul_character_in_any_text_field_is_a_422_naming_the_field(registry, puyang, city):
    response = await registry.post("/v1/residents", headers=puyang, json=resident_body(name="王\u0000秀英"))
    assert response.status_code == 422 and response.json()["field"] == "name", response.text
    response = await registry.post("/v1/residents", headers=puyang,
                                   json=resident_body(categories=["低保", "重\u0000残"]))
    assert response.status_code == 422 and response.json()["field"] == "categories.1"
    _, created = await register(registry, puyang)
    response = await registry.patch(f"/v1/residents/{created.json()['id']}", json={"address": "东街\u00003号"},
                                    headers={**puyang, "If-Match": created.headers["etag"]})
    assert response.status_code == 422 and response.json()["field"] == "address"
    response = await registry.post("/v1/residents/search", headers=puyang, json={"village": "东街\u0000"})
    assert response.status_code == 422 and response.json()["field"] == "village"
    response = await registry.get("/v1/audit", params={"actor": "county:\u0000"}, headers=city)
    assert response.status_code == 422 and response.json()["field"] == "actor"
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_nul_in_an_upload_name_is_refused(registry, city):
    response = await registry.post("/v1/imports", params={"filename": "居民\u0000.csv"}, content=csv_bytes([person()]),
                                   headers={**city, "Content-Type": "text/csv"})
    assert response.status_code == 422 and response.json()["field"] == "filename"


async def test_cursors_that_were_made_up_or_tampered_with_are_a_422_naming_cursor(registry, city, puyang):
    job = await import_file(registry, city, csv_bytes([person(name=""), person(name=""), person(name="")]))
    errors = job["links"]["errors"]
    for path, params in (("/v1/audit", {"cursor": "15762597829088745881600"}),
                         (errors, {"format": "json", "cursor": "13620901106"}),
                         ("/v1/imports", {"cursor": "bm90IGEgY3Vyc29y"})):
        response = await registry.get(path, params=params, headers=city)
        assert response.status_code == 422 and response.json()["field"] == "cursor", (path, response.text)
    page = (await registry.get(errors, params={"format": "json", "limit": 1}, headers=city)).json()
    cursor = page["next_cursor"]
    assert cursor and "." in cursor
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    assert (await registry.get(errors, params={"format": "json", "cursor": tampered}, headers=city)).status_code == 422
    # A cursor is bound to its list: another job's report or another route does not take it.
    other = await import_file(registry, city, csv_bytes([person(name="")]))
    response = await registry.get(other["links"]["errors"], params={"format": "json", "cursor": cursor}, headers=city)
    assert response.status_code == 422 and response.json()["field"] == "cursor"
    assert (await registry.get("/v1/audit", params={"cursor": cursor}, headers=city)).status_code == 422
    search = await registry.post("/v1/residents/search", headers=puyang, json={"cursor": cursor})
    assert search.status_code == 422 and search.json()["field"] == "cursor"
    following = await registry.get(errors, params={"format": "json", "limit": 1, "cursor": cursor}, headers=city)
    assert following.status_code == 200 and following.json()["items"][0]["row"] == 3


async def test_api_connections_carry_a_statement_timeout_and_a_cancelled_query_is_a_503(registry):
    runtime = registry.app.state.runtime
    async with runtime.db.connection() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "30s"
    from shared.db import Database

    quick = Database(runtime.db.url, "registry", pool_size=1, statement_timeout_s=0.2)
    await quick.start()
    try:
        async with quick.connection() as conn:
            import asyncpg
            import pytest

            with pytest.raises(asyncpg.QueryCanceledError):
                await conn.execute("SELECT pg_sleep(2)")
    finally:
        await quick.close()
    assert uuid.uuid4()


async def test_a_nul_in_an_imported_cell_rejects_that_row_naming_the_column(registry, city):
    content = csv_bytes([person(), person(name="王\u0000秀英"), person(address="东街\u00003号"), person()])
    job = await import_file(registry, city, content)
    assert (job["status"], job["accepted"], job["rejected"]) == ("succeeded", 2, 2), job
    page = (await registry.get(job["links"]["errors"], params={"format": "json"}, headers=city)).json()
    assert [(i["row"], i["column"]) for i in page["items"]] == [(3, "姓名"), (4, "详细地址")]
    assert all("\x00" not in i["value"] and "NUL" in i["message"] for i in page["items"])
