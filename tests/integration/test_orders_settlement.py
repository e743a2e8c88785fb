"""Monthly settlement: every completed, verified order of a county's month per provider with its
split; totals reconcile to the fen with the orders; a closed month is immutable and a late
confirmation goes to the next month as an adjustment; CSV and XLSX with Chinese headers."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import datetime, timedelta, timezone

from tests.conftest import token_for
from tests.integration.orders_fixtures import (
    HOME, new_caregiver, new_provider, new_resident, place, runtime_of,
)

COUNTY = "410926"  # 范县: only this test settles here, so it may close the month


async def completed(orders, settings, provider, caregiver, rid, start_ago=61, end_ago=0, lat=HOME[0]):
    county = token_for(settings, "county", COUNTY)
    prov = token_for(settings, "provider", provider_id=provider)
    cg = token_for(settings, "caregiver", caregiver_id=caregiver)
    oid = (await place(orders, county, rid, provider, items=[{"service_code": "cleaning", "quantity": 1},
                                                            {"service_code": "meal", "quantity": 2}])).json()["id"]
    await orders.post(f"/v1/orders/{oid}/accept", headers=prov)
    await orders.post(f"/v1/orders/{oid}/assign", headers=prov, json={"caregiver_id": caregiver})
    now = datetime.now(timezone.utc)
    start, end = (now - timedelta(minutes=start_ago)).isoformat(), (now - timedelta(minutes=end_ago)).isoformat()
    await orders.post(f"/v1/orders/{oid}/check-in", headers=cg,
                      json={"lat": lat, "lon": HOME[1], "accuracy_m": 5, "time": start})
    r = await orders.post(f"/v1/orders/{oid}/check-out", headers=cg, json={"lat": HOME[0], "lon": HOME[1],
                                                                          "accuracy_m": 5, "time": end})
    assert r.status_code == 200, r.text
    return r.json()


async def test_statement_lists_verified_orders_reconciles_and_a_closed_month_stays_closed(orders, settings):
    rids = [await new_resident(orders, settings, county_code=COUNTY, categories=cats)
            for cats in (["minimum_allowance"], [], ["extreme_poverty_dispersed"])]
    p1, p2 = await new_provider(orders, settings, county=COUNTY), await new_provider(orders, settings, county=COUNTY)
    c1, c2 = await new_caregiver(orders, settings, p1), await new_caregiver(orders, settings, p2)
    # one caregiver's visits one after the other (overlapping ones would be exceptions)
    done = [await completed(orders, settings, p1, c1, rids[0], 200, 135),
            await completed(orders, settings, p1, c1, rids[1], 130, 65),
            await completed(orders, settings, p2, c2, rids[2], 200, 135)]
    exception = await completed(orders, settings, p2, c2, rids[0], 10, 0)  # short: not payable yet
    assert exception["evv"]["status"] == "exception"
    month = done[0]["settlement_month"]
    county = token_for(settings, "county", COUNTY)
    doc = (await orders.get("/v1/settlements", params={"county": COUNTY, "month": month}, headers=county)).json()
    assert {line["order_id"] for p in doc["providers"] for line in p["lines"]} == {o["id"] for o in done}
    async with runtime_of(orders).db.connection() as conn:
        sums = await conn.fetchrow(
            "SELECT sum(price_fen) price_fen, sum(government_fen) government_fen, sum(collective_fen) collective_fen, "
            "sum(social_fen) social_fen, sum(personal_fen) personal_fen, count(*) orders FROM orders "
            "WHERE county_code = $1 AND state = 'completed' AND evv_status IN ('verified', 'confirmed')", COUNTY)
    assert doc["totals"] == dict(sums)
    assert doc["totals"]["price_fen"] == sum(doc["totals"][f"{s}_fen"] for s in ("government", "collective",
                                                                                  "social", "personal"))
    assert sum(p["totals"]["price_fen"] for p in doc["providers"]) == doc["totals"]["price_fen"]
    own = (await orders.get("/v1/settlements", params={"month": month},
                            headers=token_for(settings, "provider", provider_id=p2))).json()
    assert [p["provider_id"] for p in own["providers"]] == [p2]
    assert (await orders.get("/v1/settlements", params={"county": COUNTY},
                             headers=token_for(settings, "county", "410928"))).status_code == 403

    text = (await orders.get("/v1/settlements.csv", params={"county": COUNTY, "month": month},
                             headers=county)).content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:4] == ["县区代码", "结算月份", "服务商编号", "订单编号"] and rows[0][8] == "订单金额(分)"
    assert rows[-1][0] == "合计" and int(rows[-1][8]) == doc["totals"]["price_fen"] and len(rows) == 2 + 3
    xlsx = await orders.get("/v1/settlements.xlsx", params={"county": COUNTY, "month": month}, headers=county)
    with zipfile.ZipFile(io.BytesIO(xlsx.content)) as book:
        strings = book.read("xl/sharedStrings.xml").decode()
    assert "结算月份" in strings and "合计" in strings

    r = await orders.post("/v1/settlements/close", headers=county, json={"county_code": COUNTY, "month": month})
    assert r.status_code == 201 and r.json()["totals"] == doc["totals"]
    again = await orders.post("/v1/settlements/close", headers=county, json={"county_code": COUNTY, "month": month})
    assert again.status_code == 409 and again.json()["field"] == "month"
    # the late confirmation goes to the next month as an adjustment; the closed month is unchanged
    oid = exception["id"]
    await orders.post(f"/v1/orders/{oid}/visit-exception", headers=token_for(settings, "provider", provider_id=p2),
                      json={"reason": "老人身体不适，提前结束"})
    confirmed = (await orders.post(f"/v1/orders/{oid}/confirm-visit", headers=county, json={})).json()
    assert confirmed["adjustment"] is True and confirmed["settlement_month"] > month
    after = (await orders.get("/v1/settlements", params={"county": COUNTY, "month": month}, headers=county)).json()
    assert after["closed"] and after["totals"] == doc["totals"]
    nxt = (await orders.get("/v1/settlements", params={"county": COUNTY, "month": confirmed["settlement_month"]},
                            headers=county)).json()
    assert [line["adjustment"] for p in nxt["providers"] for line in p["lines"]] == [True]
