"""Below the county, without a server: the family-doctor KPI counted exactly from birth months, the
township and village counts built from the same counting contract, and the fold moving a resident
between townships and in and out of a contract."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

from services.reporting.domain.folding import CITY, apply_event, delta
from services.reporting.queries import area_view, family_doctor_view
from shared.buckets import DIMENSIONS, aged_at_least, counts_sql

TODAY = date(2026, 11, 20)


def snap(version: int = 1, **over):
    base = dict(resident_id="r1", county_code="410928", birth_date="1955-06-02", gender="female",
                living_arrangement="alone", categories=[], ability_level=None, status="active", family_bed=False,
                version=version, township="城关镇", village="东街社区", family_doctor_contract=False)
    return SimpleNamespace(resident=SimpleNamespace(**base | over))


def test_aged_at_least_is_exact_to_the_month():
    months = {"1961-11": 2, "1961-12": 3, "1950-01": 1, "1970-05": 4}
    assert aged_at_least(months, 65, TODAY) == 2 + 1  # born November 1961: 65 this month
    assert aged_at_least(months, 60, TODAY) == 6
    assert aged_at_least({}, 65, TODAY) == 0


def test_the_kpi_is_the_share_of_65plus_elders_with_a_contract():
    dims = {"birth_month": {"1950-01": 6, "1963-03": 4}, "family_doctor": {"1950-01": 3, "1963-03": 2}}
    assert family_doctor_view(dims, TODAY) == {"elderly_65plus": 6, "contracted_65plus": 3, "share_65plus": 0.5,
                                               "contracted": 5}
    assert family_doctor_view({}, TODAY)["share_65plus"] is None  # no elders: no share, not 0 %


def test_a_township_has_the_county_dimensions_and_no_facility_figures():
    dims = {"status": {"active": 3, "deceased": 1}, "birth_month": {"1920-02": 1, "1950-01": 2},
            "category": {"dementia": 1}, "family_bed": {"yes": 1}, "family_doctor": {"1950-01": 2}}
    view = area_view("城关镇", dims, TODAY)
    assert view["name"] == "城关镇" and view["residents"]["registered"] == 4 and view["residents"]["active"] == 3
    assert view["residents"]["centenarians"] == 1 and view["residents"]["by_category"] == {"dementia": 1}
    assert view["family_beds"] == 1 and view["family_doctor"]["share_65plus"] == round(2 / 3, 4)
    assert "facilities" not in view and "training" not in view


def test_area_counts_use_every_dimension_over_one_scan_of_the_area():
    sql = counts_sql("residents", area="township", where="county_code = $1")
    assert sql.startswith("WITH scope AS MATERIALIZED (SELECT * FROM residents WHERE county_code = $1)")
    selects = sql.split("\n", 1)[1].split("\nUNION ALL\n")
    assert len(selects) == len(DIMENSIONS)
    assert all(s.startswith("SELECT township, ") and " FROM scope" in s for s in selects)
    assert "FROM residents" not in sql.split("\n", 1)[1]
    assert counts_sql("residents") == counts_sql()  # the registry's recount is unchanged by the option


def test_a_move_between_townships_moves_only_the_township_count():
    old = apply_event(None, "eldercare.resident.registered.v1", snap())
    new = apply_event(old, "eldercare.resident.updated.v1", snap(2, township="柳屯镇", village="西村"))
    assert (new.township, new.village) == ("柳屯镇", "西村")
    assert dict(delta(old, new)) == {("410928", "township", "城关镇"): -1, ("410928", "township", "柳屯镇"): 1,
                                     (CITY, "township", "城关镇"): -1, (CITY, "township", "柳屯镇"): 1}


def test_a_contract_signed_and_a_death_move_the_family_doctor_count():
    old = apply_event(None, "eldercare.resident.registered.v1", snap())
    signed = apply_event(old, "eldercare.resident.updated.v1", snap(2, family_doctor_contract=True))
    assert dict(delta(old, signed)) == {("410928", "family_doctor", "1955-06"): 1, (CITY, "family_doctor", "1955-06"): 1}
    dead = apply_event(signed, "eldercare.resident.deceased.v1", SimpleNamespace(level=None))
    assert delta(signed, dead)[("410928", "family_doctor", "1955-06")] == -1  # the active only count
