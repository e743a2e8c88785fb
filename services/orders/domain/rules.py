"""Who a rule applies to, as data: the catalog's eligibility rules and the policies' benefit
conditions use the same small language, so the city edits them without a release.

A rule is a JSON object; every key present must hold (an empty rule holds for everyone):
  ability_level_min: n        GB/T 42195 level n or worse (an unassessed resident has none)
  age_min: n                  aged n or more on the service day
  categories_any: [...]       at least one of these special-hardship categories
  living_arrangement_in: [...]
  family_bed: true            has a family elder-care bed
  any: [rule, ...]            at least one of these rules holds
"""

from __future__ import annotations

from datetime import date

from services.orders.domain.residents import ResidentFacts

KNOWN_KEYS = frozenset({"ability_level_min", "age_min", "categories_any", "living_arrangement_in", "family_bed", "any"})


class RuleInvalid(ValueError):
    """A rule that uses an unknown key or a value of the wrong kind."""


def validate_rule(rule: object, path: str = "rule") -> None:
    if not isinstance(rule, dict):
        raise RuleInvalid(f"{path} must be an object")
    for key, value in rule.items():
        if key not in KNOWN_KEYS:
            raise RuleInvalid(f"{path}.{key} is not a known condition ({', '.join(sorted(KNOWN_KEYS))})")
        if key in ("ability_level_min", "age_min") and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise RuleInvalid(f"{path}.{key} must be a non-negative integer")
        if key in ("categories_any", "living_arrangement_in") and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise RuleInvalid(f"{path}.{key} must be a list of codes")
        if key == "family_bed" and not isinstance(value, bool):
            raise RuleInvalid(f"{path}.family_bed must be true or false")
        if key == "any":
            if not isinstance(value, list) or not value:
                raise RuleInvalid(f"{path}.any must be a non-empty list of rules")
            for i, sub in enumerate(value):
                validate_rule(sub, f"{path}.any[{i}]")


def unmet(rule: dict, resident: ResidentFacts, day: date) -> str | None:
    """None when the rule holds, else the first condition that does not (a sentence for the caller)."""
    level = rule.get("ability_level_min")
    if level is not None and (resident.ability_level is None or resident.ability_level < level):
        return f"needs ability level {level} or worse (resident: {resident.ability_level if resident.ability_level is not None else 'not assessed'})"
    age = rule.get("age_min")
    if age is not None and resident.age_on(day) < age:
        return f"needs age {age} or more"
    cats = rule.get("categories_any")
    if cats is not None and not set(cats) & set(resident.categories):
        return f"needs one of the categories {', '.join(cats)}"
    living = rule.get("living_arrangement_in")
    if living is not None and resident.living_arrangement not in living:
        return f"needs living arrangement {' or '.join(living)}"
    bed = rule.get("family_bed")
    if bed is not None and resident.family_bed != bed:
        return "needs a family elder-care bed" if bed else "not for residents with a family elder-care bed"
    alternatives = rule.get("any")
    if alternatives:
        reasons = [unmet(sub, resident, day) for sub in alternatives]
        if all(r is not None for r in reasons):
            return "; or ".join(r for r in reasons if r)
    return None
