"""The registry's domain errors as HTTP answers (RFC 9457 problem details): the one table."""

from __future__ import annotations

from services.registry.domain.errors import (
    InvalidRecord, OutsideScope, ResidentAlreadyRegistered, ResidentNotActive, ResidentNotFound, StaleVersion,
    VersionRequired,
)
from services.registry.domain.imports import ImportJobNotFound, ImportsBusy, UnsupportedImportFile
from shared.problems import (
    Conflict, Forbidden, NotFound, PreconditionFailed, PreconditionRequired, ProblemMap, ProblemType,
    ServiceUnavailable, Unprocessable, UnsupportedMediaType,
)

PROBLEMS: ProblemMap = {
    ResidentNotFound: ProblemType(NotFound, "resident-not-found"),
    ResidentAlreadyRegistered: ProblemType(Conflict, "resident-already-registered"),
    ResidentNotActive: ProblemType(Conflict, "resident-not-active"),
    StaleVersion: ProblemType(PreconditionFailed, "stale-version"),
    VersionRequired: ProblemType(PreconditionRequired, "if-match-required"),
    OutsideScope: ProblemType(Forbidden, "outside-scope"),
    InvalidRecord: ProblemType(Unprocessable, "invalid-record"),
    ImportJobNotFound: ProblemType(NotFound, "import-not-found"),
    UnsupportedImportFile: ProblemType(UnsupportedMediaType, "unsupported-import-file", title="Unsupported file"),
    # Imports run one at a time per process and take a minute or so for a county's file.
    ImportsBusy: ProblemType(ServiceUnavailable, "imports-busy", headers={"Retry-After": "60"}),
}
