"""Splitting an integer total in proportion to integer weights so the parts add up to it exactly.

Hamilton's (largest remainder) method, the way the task list's published table apportions a city
target to its counties (SPEC §2 "Targets"): every part gets the floor of its exact quota, and the
units left over go one each to the largest fractional remainders. One tie-break, so every caller
gets the same answer for the same input: on equal remainders the larger weight first (the bigger
county), then the smaller key.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["apportion"]


def apportion(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """`total` split across the keys of `weights` in proportion to them; the parts sum to `total`.

    A total of 0 gives zeros whatever the weights; a positive total needs weights with a
    positive sum. Arithmetic is on integers (quota numerators over the weight sum), so it is exact.
    """
    if total < 0:
        raise ValueError("total must not be negative")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must not be negative")
    weight_sum = sum(weights.values())
    if total == 0 or not weights:
        return {k: 0 for k in weights}
    if weight_sum <= 0:
        raise ValueError("weights must have a positive sum")
    parts = {k: total * w // weight_sum for k, w in weights.items()}
    left = total - sum(parts.values())
    # The remainder of total*w over weight_sum orders the fractional parts exactly.
    order = sorted(weights, key=lambda k: (-(total * weights[k] % weight_sum), -weights[k], k))
    for k in order[:left]:
        parts[k] += 1
    return parts
