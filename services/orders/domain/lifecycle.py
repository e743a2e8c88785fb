"""The order state machine (SPEC §2): placed → accepted → assigned → checked_in → completed →
rated, or it ends cancelled, rejected, expired (not accepted in time) or no_show. Any other step
is refused naming the current state."""

from __future__ import annotations

from services.orders.domain.errors import TransitionRefused

# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "accept": (frozenset({"placed"}), "accepted"),
    "reject": (frozenset({"placed"}), "rejected"),
    # Re-assigning before the visit starts hands the order to another caregiver.
    "assign": (frozenset({"accepted", "assigned"}), "assigned"),
    "check_in": (frozenset({"assigned"}), "checked_in"),
    "check_out": (frozenset({"checked_in"}), "completed"),
    "cancel": (frozenset({"placed", "accepted", "assigned"}), "cancelled"),
    "rate": (frozenset({"completed"}), "rated"),
    # The scheduler's steps.
    "expire": (frozenset({"placed"}), "expired"),
    "no_show": (frozenset({"accepted", "assigned"}), "no_show"),
}
# States after which the order's budget and entitlement reservation is given back.
RELEASING = frozenset({"cancelled", "rejected", "expired", "no_show"})
FINAL = RELEASING | {"rated"}
OPEN = frozenset({"placed", "accepted", "assigned", "checked_in"})
STATES = ("placed", "accepted", "assigned", "checked_in", "completed", "rated", "cancelled", "rejected",
          "expired", "no_show")


def next_state(current: str, action: str) -> str:
    sources, target = TRANSITIONS[action]
    if current not in sources:
        allowed = ", ".join(sorted(sources))
        raise TransitionRefused(
            f"The order is {current}; {action.replace('_', '-')} needs it to be {allowed}.",
            field="state", current_state=current)
    return target
