"""How residents are counted: the contract between the registry, which recounts its rows
(GET /v1/stats/residents), and reporting, which folds resident events into the same counters and
compares the two (GET /v1/consistency).

A resident counts in one bucket of each dimension: `status` for every entry of the registry, the
profile dimensions for active residents only. `birth_month` rather than an age, so age bands are
computed exactly (to the month) on the day they are read; `family_doctor` is the birth month of
those with a family-doctor contract, so the share of 65+ elders with one is exact the same way.
`township` places the active in their township (the county's; names repeat across counties). The bucket values are the event
contract's (shared/events/residents.py): a category, a gender, a living arrangement, a status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import get_args

from shared.events.residents import Category, Gender, LivingArrangement, Status

__all__ = [
    "ACTIVE", "AGE_BANDS", "DIMENSIONS", "Dimension", "FAMILY_BED", "UNASSESSED", "age_bands", "aged_at_least",
    "band_label", "counts_sql", "elderly_count", "resident_buckets",
]

ACTIVE = "active"
UNASSESSED = "unassessed"  # the ability_level bucket of a resident never assessed
FAMILY_BED = "yes"  # the one family_bed bucket: residents who have a family elder-care bed


@dataclass(frozen=True, slots=True)
class Dimension:
    name: str
    # The bucket as a SQL expression over one row of the registry's residents table.
    sql: str
    # The buckets there can be (None: open-ended, e.g. birth months).
    values: tuple[str, ...] | None
    # Every entry counts, whatever its status (otherwise active residents only).
    everyone: bool = False
    # A FROM item giving one bucket per element (a resident counts once per category).
    sql_from: str = ""
    # Only rows meeting this condition count at all.
    sql_where: str = ""


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("status", "status", get_args(Status), everyone=True),
    Dimension("birth_month", "to_char(birth_date, 'YYYY-MM')", None),
    Dimension("gender", "gender", get_args(Gender)),
    Dimension("living_arrangement", "living_arrangement", get_args(LivingArrangement)),
    Dimension("ability_level", f"coalesce(ability_level::text, '{UNASSESSED}')",
              ("0", "1", "2", "3", "4", UNASSESSED)),  # GB/T 42195-2022 levels 0-4
    Dimension("category", "c", get_args(Category), sql_from=", unnest(categories) AS c"),
    Dimension("family_bed", f"'{FAMILY_BED}'", (FAMILY_BED,), sql_where="family_bed"),
    Dimension("family_doctor", "to_char(birth_date, 'YYYY-MM')", None, sql_where="family_doctor_contract"),
    Dimension("township", "township", None),
)


def resident_buckets(r) -> list[tuple[str, str]]:
    """(dimension, bucket) pairs a resident counts in; `r` has the snapshot's attributes (status,
    birth_date, gender, living_arrangement, ability_level, categories, family_bed,
    family_doctor_contract, township). The same rules as `counts_sql`, written out because reporting
    runs this twice per folded event."""
    out = [("status", r.status)]
    if r.status != ACTIVE:
        return out
    month = f"{r.birth_date.year:04d}-{r.birth_date.month:02d}"
    out += [
        ("birth_month", month),
        ("gender", r.gender),
        ("living_arrangement", r.living_arrangement),
        ("ability_level", str(r.ability_level) if r.ability_level is not None else UNASSESSED),
    ]
    out += [("category", c) for c in r.categories]
    if r.family_bed:
        out.append(("family_bed", FAMILY_BED))
    if r.family_doctor_contract:
        out.append(("family_doctor", month))
    out.append(("township", r.township))
    return out


def counts_sql(table: str = "residents", area: str = "county_code", where: str = "") -> str:
    """One statement counting `table`'s rows per (`area`, dim, bucket) by `DIMENSIONS`: per county, or
    (area "township" or "village", `where` naming the county or township) below it."""
    source = "scope" if where else table
    selects = []
    for d in DIMENSIONS:
        conditions = [] if d.everyone else [f"status = '{ACTIVE}'"]
        conditions += [d.sql_where] if d.sql_where else []
        selects.append(f"SELECT {area}, '{d.name}' AS dim, {d.sql} AS bucket, count(*) AS n "
                       f"FROM {source}{d.sql_from}"
                       + (f" WHERE {' AND '.join(conditions)}" if conditions else "") + " GROUP BY 1, 3")
    body = "\nUNION ALL\n".join(selects)
    # One scan of the rows in scope, counted by every dimension.
    return f"WITH scope AS MATERIALIZED (SELECT * FROM {table} WHERE {where})\n{body}" if where else body


# ---------------------------------------------------------------- age bands ----------------

AGE_BANDS = [(60 + 5 * i, 64 + 5 * i) for i in range(8)] + [(100, 200)]


def band_label(low: int, high: int) -> str:
    return f"{low}+" if high >= 200 else f"{low}-{high}"


def age_bands(birth_months: dict[str, int], today: date) -> dict[str, int]:
    """Residents per age band (60-64 … 95-99, 100+) from counts per birth month. Someone born in
    the current calendar month is counted as having had the birthday (exact to the month)."""
    bands = {band_label(lo, hi): 0 for lo, hi in AGE_BANDS}
    under = 0
    for month, n in birth_months.items():
        year, mon = int(month[:4]), int(month[5:7])
        age = today.year - year - (1 if mon > today.month else 0)
        for lo, hi in AGE_BANDS:
            if lo <= age <= hi:
                bands[band_label(lo, hi)] += n
                break
        else:
            under += n
    bands["under_60"] = under
    return bands


def aged_at_least(birth_months: dict[str, int], age: int, today: date) -> int:
    """How many of those counted per birth month are `age` or older today (exact to the month, as
    age_bands counts)."""
    n = 0
    for month, count in birth_months.items():
        year, mon = int(month[:4]), int(month[5:7])
        if today.year - year - (1 if mon > today.month else 0) >= age:
            n += count
    return n


def elderly_count(birth_months: dict[str, int], today: date) -> int:
    """Active residents aged 60 and over."""
    bands = age_bands(birth_months, today)
    return sum(v for k, v in bands.items() if k != "under_60")
