"""The counting contract (shared/buckets.py): the dimensions and buckets a resident counts in, the
same for the registry's recount and reporting's fold."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

from shared.buckets import DIMENSIONS, UNASSESSED, age_bands, counts_sql, resident_buckets

BY_NAME = {d.name: d for d in DIMENSIONS}


def resident(**over) -> SimpleNamespace:
    values = dict(status="active", birth_date=date(1950, 3, 9), gender="female", living_arrangement="alone",
                  ability_level=2, categories=("dementia", "low_income"), family_bed=True,
                  family_doctor_contract=True, township="城关镇")
    return SimpleNamespace(**values | over)


def test_an_active_resident_counts_once_in_each_profile_dimension_and_once_per_category():
    assert resident_buckets(resident()) == [
        ("status", "active"), ("birth_month", "1950-03"), ("gender", "female"), ("living_arrangement", "alone"),
        ("ability_level", "2"), ("category", "dementia"), ("category", "low_income"), ("family_bed", "yes"),
        ("family_doctor", "1950-03"), ("township", "城关镇")]
    assert ("family_doctor", "1950-03") not in resident_buckets(resident(family_doctor_contract=False))


def test_an_entry_no_longer_active_counts_only_in_the_dimensions_for_everyone():
    everyone = {d.name for d in DIMENSIONS if d.everyone}
    for status in ("deceased", "transferred"):
        assert {dim for dim, _ in resident_buckets(resident(status=status))} == everyone == {"status"}


def test_every_bucket_given_is_one_the_contract_declares():
    residents = [resident(), resident(ability_level=None, categories=(), family_bed=False, gender="male",
                                      living_arrangement="institution"), resident(status="deceased")]
    seen = set()
    for r in residents:
        for dim, bucket in resident_buckets(r):
            values = BY_NAME[dim].values
            assert values is None or bucket in values, (dim, bucket)
            seen.add(dim)
    assert seen == set(BY_NAME)
    assert ("ability_level", UNASSESSED) in resident_buckets(residents[1])


def test_the_registry_counts_every_dimension_and_active_residents_only_for_the_profile():
    sql = counts_sql("residents")
    selects = sql.split("\nUNION ALL\n")
    assert len(selects) == len(DIMENSIONS)
    for d, select in zip(DIMENSIONS, selects):
        assert f"'{d.name}' AS dim, {d.sql} AS bucket" in select
        assert ("status = 'active'" in select) is not d.everyone


def test_age_bands_from_birth_months_are_exact_to_the_month():
    today = date(2026, 11, 20)
    bands = age_bands({"1966-11": 2, "1966-12": 3, "1926-01": 1, "1980-05": 4}, today)
    assert bands["60-64"] == 2  # born November 1966: 60 this month
    assert bands["under_60"] == 3 + 4  # December 1966 not yet 60
    assert bands["100+"] == 1
