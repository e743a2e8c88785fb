"""Subsidy policies as data (SPEC §2): a city-wide document and per-county overrides, each a
series of versions with effective dates. The policy in force for a county on a day is the newest
version of the county's own series covering that day, falling back to the city's for whatever the
county does not set (benefits, budgets)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.orders.domain.funding import PUBLIC_SOURCES, Benefit
from services.orders.domain.residents import ResidentFacts
from services.orders.domain.rules import RuleInvalid, unmet, validate_rule

CITY = "city"


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    scope: str                   # "city" or a county code
    version: int
    effective_from: date
    effective_to: date | None    # last day in force (inclusive); None: open-ended
    benefits: tuple[Benefit, ...] | None   # None: inherit the city's
    budgets: dict[str, int] | None         # monthly fen per public source; None: inherit

    def covers(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)

    @property
    def ref(self) -> str:
        return f"{self.scope}@v{self.version}"


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    benefits: tuple[Benefit, ...]
    budgets: dict[str, int]
    ref: str   # what an order keeps: the versions it was priced with, e.g. "410928@v2+city@v3"


def in_force(versions: list[PolicyVersion], scope: str, day: date) -> PolicyVersion | None:
    candidates = [v for v in versions if v.scope == scope and v.covers(day)]
    return max(candidates, key=lambda v: v.version, default=None)


def resolve(versions: list[PolicyVersion], county: str, day: date) -> PolicyInForce:
    city = in_force(versions, CITY, day)
    local = in_force(versions, county, day)
    benefits = (local.benefits if local and local.benefits is not None else (city.benefits if city else None)) or ()
    budgets = (local.budgets if local and local.budgets is not None else (city.budgets if city else None)) or {}
    refs = [v.ref for v in (local, city) if v is not None]
    return PolicyInForce(tuple(benefits), {s: int(budgets.get(s, 0)) for s in PUBLIC_SOURCES}, "+".join(refs) or "none")


def benefits_for(policy: PolicyInForce, resident: ResidentFacts, day: date) -> list[Benefit]:
    """The benefits a resident has on a day: none once dead or moved out of the city (SPEC §2:
    subsidy stops from that date), else those whose condition holds."""
    if resident.status != "active" or (resident.date_of_death is not None and day >= resident.date_of_death):
        return []
    return [b for b in policy.benefits if unmet(b.when, resident, day) is None]


def parse_benefits(raw: list[dict]) -> tuple[Benefit, ...]:
    """Benefits from a policy document, or RuleInvalid naming the first bad field."""
    out: list[Benefit] = []
    codes: set[str] = set()
    for i, b in enumerate(raw):
        path = f"benefits[{i}]"
        if not isinstance(b, dict):
            raise RuleInvalid(f"{path} must be an object")
        code = b.get("code")
        if not isinstance(code, str) or not code or code in codes:
            raise RuleInvalid(f"{path}.code must be a unique non-empty text")
        codes.add(code)
        if b.get("source") not in PUBLIC_SOURCES:
            raise RuleInvalid(f"{path}.source must be one of {', '.join(PUBLIC_SOURCES)}")
        share = b.get("share_pct")
        if not isinstance(share, int) or isinstance(share, bool) or not 1 <= share <= 100:
            raise RuleInvalid(f"{path}.share_pct must be an integer from 1 to 100")
        cap = b.get("monthly_cap_fen")
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
            raise RuleInvalid(f"{path}.monthly_cap_fen must be a non-negative integer (fen)")
        when = b.get("when", {})
        validate_rule(when, f"{path}.when")
        services = b.get("services")
        if services is not None and (not isinstance(services, list) or not all(isinstance(s, str) for s in services)):
            raise RuleInvalid(f"{path}.services must be a list of service codes")
        out.append(Benefit(code, str(b.get("name") or code), b["source"], share, cap, when,
                           tuple(services) if services is not None else None))
    return tuple(out)


def parse_budgets(raw: dict) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise RuleInvalid("budgets must be an object")
    for key, value in raw.items():
        if key not in PUBLIC_SOURCES:
            raise RuleInvalid(f"budgets.{key} is not a public funding source ({', '.join(PUBLIC_SOURCES)})")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise RuleInvalid(f"budgets.{key} must be a non-negative integer (fen a month)")
    return {s: int(raw.get(s, 0)) for s in PUBLIC_SOURCES}


def benefit_document(b: Benefit) -> dict:
    return {"code": b.code, "name": b.name, "source": b.source, "share_pct": b.share_pct,
            "monthly_cap_fen": b.monthly_cap_fen, "when": b.when,
            "services": list(b.services) if b.services is not None else None}


_HOME_CARE = ["meal", "meal_delivery", "cleaning", "bathing", "mobility", "medical_escort", "emotional_support",
              "visit", "nursing_care", "family_bed_service", "medicine_delivery"]
_CARE = ["bathing", "mobility", "nursing_care", "rehab_training", "hospice_care", "day_care", "respite_care",
         "family_bed_service"]

# The city's first policy (version 1, seeded on first start; the city edits it through /v1/policies).
DEFAULT_CITY_POLICY = {
    "benefits": [
        {"code": "extreme_poverty_dispersed", "name": "特困分散供养 居家照护", "source": "government",
         "share_pct": 100, "monthly_cap_fen": 60000, "when": {"categories_any": ["extreme_poverty_dispersed"]},
         "services": _HOME_CARE},
        {"code": "severe_disability_care", "name": "重度失能 照护服务", "source": "government", "share_pct": 70,
         "monthly_cap_fen": 40000,
         "when": {"any": [{"ability_level_min": 3}, {"categories_any": ["severe_disability"]}]}, "services": _CARE},
        {"code": "minimum_allowance", "name": "低保 服务补贴", "source": "government", "share_pct": 80,
         "monthly_cap_fen": 20000, "when": {"categories_any": ["minimum_allowance"]}},
        {"code": "advanced_age", "name": "高龄 服务津贴", "source": "government", "share_pct": 100,
         "monthly_cap_fen": 5000, "when": {"age_min": 80}},
        {"code": "village_collective", "name": "村集体 互助", "source": "collective", "share_pct": 10,
         "monthly_cap_fen": 3000, "when": {"categories_any": ["low_income", "extreme_poverty_dispersed",
                                                                 "minimum_allowance"]}},
        {"code": "charity_solitary", "name": "慈善 独居空巢关爱", "source": "social", "share_pct": 10,
         "monthly_cap_fen": 3000, "when": {"living_arrangement_in": ["alone", "empty_nest"], "age_min": 70}},
    ],
    # Per county and month, fen.
    "budgets": {"government": 20_000_000, "collective": 2_000_000, "social": 1_000_000},
}
