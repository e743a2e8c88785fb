"""The registry's domain errors; each is a problem type answered once by shared/problems.py."""

from shared.problems import Conflict, Forbidden, NotFound, PreconditionFailed, PreconditionRequired, Unprocessable


class ResidentNotFound(NotFound):
    slug = "resident-not-found"


class ResidentAlreadyRegistered(Conflict):
    """The ID number is registered already; the answer names the owning county, nothing else."""

    slug = "resident-already-registered"


class ResidentNotActive(Conflict):
    slug = "resident-not-active"


class StaleVersion(PreconditionFailed):
    slug = "stale-version"


class VersionRequired(PreconditionRequired):
    slug = "if-match-required"


class OutsideScope(Forbidden):
    slug = "outside-scope"


class InvalidRecord(Unprocessable):
    slug = "invalid-record"
