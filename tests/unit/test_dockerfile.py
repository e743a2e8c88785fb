"""deploy/Dockerfile: plain-text checks (building the image needs a Docker engine; these do not)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _last(keyword: str) -> str:
    values = [rest for kw, rest in _instructions() if kw == keyword]
    assert values, f"no {keyword} in the Dockerfile"
    return values[-1]


def test_based_on_python_311_slim():
    images = [rest.split()[0] for kw, rest in _instructions() if kw == "FROM"]
    assert images and all(image == "python:3.11-slim" for image in images), images


def test_entrypoint_is_eldercare_and_default_command_serves_registry():
    assert json.loads(_last("ENTRYPOINT")) == ["eldercare"]
    assert json.loads(_last("CMD")) == ["serve", "registry"]


def test_installs_the_project_from_pyproject_without_dev_extras():
    runs = " ".join(rest for kw, rest in _instructions() if kw == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), "the project must be installed with `pip install .`"
    assert "[dev]" not in runs and " -e " not in runs
    copies = [rest for kw, rest in _instructions() if kw == "COPY"]
    assert any("pyproject.toml" in copy for copy in copies)


def test_copies_every_package_pyproject_installs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {rest.split()[0] for kw, rest in _instructions() if kw == "COPY" and "--from" not in rest}
    for pattern in include:
        top = pattern.rstrip("*").rstrip(".")
        assert top in copied, f"pyproject installs {pattern!r} but the Dockerfile does not COPY {top}"
        assert (ROOT / top).is_dir()


def test_runs_as_a_non_root_user():
    user = _last("USER").split(":")[0]
    assert user not in ("root", "0")


def test_listens_on_all_interfaces_and_has_a_healthcheck():
    envs = " ".join(rest for kw, rest in _instructions() if kw == "ENV")
    assert "SERVICE_HOST=0.0.0.0" in envs
    healthcheck = _last("HEALTHCHECK")
    assert "/healthz" in healthcheck and "curl" not in healthcheck
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3:])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<healthcheck>", "exec")
