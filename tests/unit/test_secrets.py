"""No secret written in the repository signs anything; `make up` makes its own; `eldercare token`
uses it, names a person and an audience, and refuses lifetimes beyond the maximum."""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from shared.settings import PlatformSettings, get_settings

ROOT = Path(__file__).resolve().parents[2]
# A value written after anything named like a secret: `JWT_SECRET=…`, `jwt_secret: "…"`, `X_SECRET = "…"`.
# `${…}` and `$(…)` are how compose and the docs take it from the environment, not values.
_ASSIGNED = re.compile(r"""(?i)\b\w*secret\w*["']?\s*[:=]\s*["']?([^\s"'$`{}()<>,\[\]]{8,})""")


def _written_secrets() -> dict[str, str]:
    """Every value the repository's tracked files assign to something named like a secret."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    found: dict[str, str] = {}
    for name in files:
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for match in _ASSIGNED.finditer(text):
            found.setdefault(match.group(1), name)
    return found


def test_no_secret_written_in_the_repository_is_accepted():
    candidates = _written_secrets()
    accepted = []
    for value, where in candidates.items():
        for env in ("development", "production"):
            try:
                PlatformSettings(_env_file=None, eldercare_env=env, jwt_secret=value)
            except ValueError:
                continue
            accepted.append((where, env))
    assert not accepted, f"a secret written in the repository is accepted: {accepted}"


def test_settings_have_no_built_in_secret():
    from shared.settings import MissingSecret

    bare = PlatformSettings(_env_file=None, jwt_secret="")
    with pytest.raises(MissingSecret, match="JWT_SECRET is not set"):
        bare.require_jwt_secret()
    import shared.settings as module

    assert not hasattr(module, "DEV_JWT_SECRET")


def test_placeholder_and_short_secrets_are_refused():
    for weak in ("x" * 40, "changeme" * 5, "short-but-random-Zq8"):
        with pytest.raises(ValueError, match="JWT_SECRET"):
            PlatformSettings(_env_file=None, jwt_secret=weak)


def test_the_local_secret_is_generated_once_and_readable_by_its_owner_only(tmp_path):
    from eldercare.secret import ensure_local_secret, read_local_secret, secret_path
    from shared.settings import MissingSecret

    first = ensure_local_secret(tmp_path)
    path = secret_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 48 and ensure_local_secret(tmp_path) == first
    path.chmod(0o644)
    with pytest.raises(MissingSecret, match="chmod 600"):
        read_local_secret(tmp_path)


@pytest.fixture
def state_env(tmp_path, monkeypatch):
    """`eldercare token` in a fresh state folder, with no JWT_SECRET in the environment."""
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("ELDERCARE_STATE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no .env of the developer's checkout
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _token(*args: str):
    from eldercare.cli import app

    return CliRunner().invoke(app, ["token", *args])


def test_token_without_any_secret_says_how_to_get_one(state_env):
    result = _token("--role", "city")
    assert result.exit_code == 2
    assert "JWT_SECRET" in result.output and "make up" in result.output


def test_token_is_signed_with_the_state_folder_secret_and_names_subject_and_audience(state_env):
    from eldercare.secret import ensure_local_secret

    secret = ensure_local_secret(state_env)
    result = _token("--role", "county", "--county", "410928", "--subject", "li.wei@410928")
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.output.strip(), secret, algorithms=["HS256"], audience="eldercare-platform")
    assert claims["sub"] == "li.wei@410928" and claims["county"] == "410928"
    assert claims["exp"] - claims["iat"] == PlatformSettings(_env_file=None, jwt_secret=secret).jwt_ttl_seconds
    for_registry = _token("--role", "city", "--subject", "ops", "--audience", "registry").output.strip()
    assert jwt.decode(for_registry, secret, algorithms=["HS256"], audience="registry")["aud"] == "registry"


def test_provider_and_caregiver_tokens_carry_their_ids_and_need_them(state_env):
    from eldercare.secret import ensure_local_secret
    from shared.auth import Role, decode_token

    secret = ensure_local_secret(state_env)
    settings = PlatformSettings(_env_file=None, jwt_secret=secret)
    provider = _token("--role", "provider", "--provider", "prov-410928-1a2b3c4d", "--subject", "wang.fang")
    assert provider.exit_code == 0, provider.output
    principal = decode_token(settings, provider.output.strip())
    assert (principal.role, principal.provider_id, principal.subject) == (
        Role.PROVIDER, "prov-410928-1a2b3c4d", "wang.fang")
    caregiver = _token("--role", "caregiver", "--caregiver", "cg-410928-5e6f7a8b", "--subject", "li.xiulan")
    assert decode_token(settings, caregiver.output.strip()).caregiver_id == "cg-410928-5e6f7a8b"
    for args, option in ((["--role", "provider"], "--provider"), (["--role", "caregiver"], "--caregiver"),
                         (["--role", "county", "--county", "410928", "--provider", "p1"], "--provider")):
        refused = _token(*args, "--subject", "someone")
        assert refused.exit_code == 2 and option in refused.output, refused.output


def test_token_refuses_a_lifetime_beyond_the_maximum(state_env, monkeypatch):
    from eldercare.secret import ensure_local_secret

    ensure_local_secret(state_env)
    result = _token("--role", "city", "--subject", "ops", "--ttl", str(30 * 86400 + 1))
    assert result.exit_code != 0
    assert "JWT_MAX_TTL_SECONDS" in result.output and "30 days" in result.output
    assert _token("--role", "city", "--subject", "ops", "--ttl", str(30 * 86400)).exit_code == 0
    monkeypatch.setenv("JWT_MAX_TTL_SECONDS", "86400")
    get_settings.cache_clear()
    assert _token("--role", "city", "--subject", "ops", "--ttl", "86401").exit_code != 0


def test_serve_refuses_to_start_without_jwt_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    env["ELDERCARE_STATE_DIR"] = str(tmp_path)
    # Even with a state folder secret next to it: only `eldercare up` hands that one over.
    (tmp_path / "jwt_secret").write_text(secrets.token_urlsafe(48))
    (tmp_path / "jwt_secret").chmod(0o600)
    result = subprocess.run([sys.executable, "-m", "eldercare.cli", "serve", "registry"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "JWT_SECRET is not set" in result.stderr


def test_the_image_and_compose_carry_no_secret():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "JWT_SECRET" not in dockerfile
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert re.search(r"JWT_SECRET: \"\$\{JWT_SECRET:\?[^}]+\}\"", compose)


def test_a_random_secret_is_accepted():
    assert PlatformSettings(_env_file=None, jwt_secret=secrets.token_urlsafe(48)).require_jwt_secret()
