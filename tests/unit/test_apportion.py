"""Largest-remainder apportionment (shared/apportion.py): one rule for the synthetic city's plan
and reporting's county targets."""

from __future__ import annotations

import random

import pytest

from shared.apportion import apportion
from shared.regions import load_counties


def test_parts_add_up_to_the_total_and_stay_within_one_of_the_exact_quota():
    rng = random.Random(5)
    for _ in range(2000):
        weights = {f"k{i}": rng.randint(0, 1000) for i in range(rng.randint(1, 9))}
        if not sum(weights.values()):
            continue
        total = rng.randint(0, 10_000)
        parts = apportion(total, weights)
        assert sum(parts.values()) == total
        for k, w in weights.items():
            assert abs(parts[k] - total * w / sum(weights.values())) < 1


def test_the_units_left_over_go_to_the_largest_remainders():
    assert apportion(7, {"a": 50, "b": 30, "c": 20}) == {"a": 4, "b": 2, "c": 1}  # 3.5, 2.1, 1.4


def test_equal_remainders_go_to_the_larger_weight_first():
    # Quotas 0.5 and 1.5: equal remainders, one unit left; the larger weight gets it.
    assert apportion(2, {"small": 2, "large": 6}) == {"small": 0, "large": 2}
    assert apportion(2, {"large": 6, "small": 2}) == {"large": 2, "small": 0}


def test_equal_remainders_and_weights_go_to_the_smaller_key_whatever_the_order_given():
    assert apportion(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert apportion(10, {"c": 1, "b": 1, "a": 1}) == {"c": 3, "b": 3, "a": 4}


def test_a_zero_total_gives_zeros_even_without_weights_to_share_by():
    assert apportion(0, {"a": 0}) == {"a": 0}
    assert apportion(0, {}) == {}


@pytest.mark.parametrize("total, weights", [(-1, {"a": 1}), (3, {"a": 0, "b": 0}), (3, {"a": -1, "b": 2})])
def test_impossible_splits_are_refused(total, weights):
    with pytest.raises(ValueError):
        apportion(total, weights)


def test_the_task_list_family_bed_target_splits_over_the_counties_to_4800():
    elderly = {code: c.elderly_60plus for code, c in load_counties().items()}
    parts = apportion(4800, elderly)
    assert sum(parts.values()) == 4800
    assert parts["410928"] == 1284  # 4800 × 178,337 / 666,648 = 1284.06
