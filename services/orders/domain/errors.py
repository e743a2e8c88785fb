"""Domain errors as types (STYLE #5), each already an RFC 9457 problem naming its field."""

from __future__ import annotations

from shared.problems import Conflict, Forbidden, NotFound, PreconditionFailed, PreconditionRequired, Unprocessable


class InvalidOrder(Unprocessable):
    slug = "invalid-order"


class ResidentUnknown(NotFound):
    slug = "resident-unknown"


class ResidentNotServable(Unprocessable):
    """Deceased or moved out: no orders, no subsidy."""

    slug = "resident-not-servable"


class NotEligible(Unprocessable):
    slug = "not-eligible"


class ItemNotOffered(Unprocessable):
    slug = "item-not-offered"


class OverCapacity(Conflict):
    slug = "over-capacity"


class TransitionRefused(Conflict):
    """The order is not in a state that allows this step; the answer names the current state."""

    slug = "transition-refused"


class OrderNotFound(NotFound):
    slug = "order-not-found"


class PartyNotFound(NotFound):
    slug = "party-not-found"


class NotQualified(Unprocessable):
    slug = "not-qualified"


class NotYourOrder(Forbidden):
    slug = "not-your-order"


class StaleVersion(PreconditionFailed):
    slug = "stale-version"


class VersionRequired(PreconditionRequired):
    slug = "version-required"


class MonthClosed(Conflict):
    slug = "month-closed"
