"""GB/T 42195-2022 ability levels as SPEC §2 transcribes them."""

import pytest

from services.registry.domain.assessment import ITEMS, AssessmentInvalid, assess, level_from_total


def full_marks() -> dict[str, int]:
    return dict(ITEMS)


def test_full_marks_are_90_points_and_level_0():
    result = assess(full_marks())
    assert (result.total, result.level) == (90, 0)
    assert result.group_scores == {"B1": 32, "B2": 15, "B3": 28, "B4": 15}


@pytest.mark.parametrize("total,level", [(90, 0), (89, 1), (66, 1), (65, 2), (46, 2), (45, 3), (30, 3), (29, 4), (0, 4)])
def test_level_boundaries(total, level):
    assert level_from_total(total) == level


def test_dementia_or_two_care_risk_events_make_the_level_one_worse_but_not_beyond_4():
    items = full_marks()
    items["B1.3"] = 0  # 86 points: mild
    assert assess(items).level == 1
    assert assess(items, diagnosed_mental_disorder=True).level == 2
    assert assess(items, care_risk_events_30d=2).level == 2
    assert assess(items, care_risk_events_30d=1).level == 1
    assert assess(level=4, diagnosed_mental_disorder=True).level == 4


def test_coma_is_level_4_whatever_the_points():
    assert assess(full_marks(), coma=True).level == 4


def test_item_out_of_range_names_the_item():
    items = full_marks()
    items["B2.4"] = 4  # stairs: 0-3
    with pytest.raises(AssessmentInvalid) as err:
        assess(items)
    assert err.value.field == "items.B2.4"


def test_missing_item_is_named():
    items = full_marks()
    del items["B4.5"]
    with pytest.raises(AssessmentInvalid) as err:
        assess(items)
    assert err.value.field == "items.B4.5"
