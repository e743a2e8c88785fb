"""The registry's domain errors: plain exceptions with names. How each is answered over HTTP is
services/registry/api/problems.py's table."""

from shared.problems import DomainError


class ResidentNotFound(DomainError):
    pass


class ResidentAlreadyRegistered(DomainError):
    """The ID number is registered already; the answer names the owning county, nothing else."""


class ResidentNotActive(DomainError):
    pass


class StaleVersion(DomainError):
    pass


class VersionRequired(DomainError):
    pass


class OutsideScope(DomainError):
    pass


class InvalidRecord(DomainError):
    pass
