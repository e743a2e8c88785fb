"""The JWT secret of a local platform: `eldercare up` generates it on first start into the state
folder (owner-only), `eldercare token` and the simulator read it from there. Everything else
(`eldercare serve`, compose, Kubernetes) gets JWT_SECRET from its environment or refuses to start."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from shared.settings import MissingSecret, PlatformSettings, secret_problem

SECRET_FILE = "jwt_secret"


def secret_path(state_dir: Path) -> Path:
    return state_dir.resolve() / SECRET_FILE


def read_local_secret(state_dir: Path) -> str | None:
    """The state folder's secret, or None if there is none yet. Refused (MissingSecret) when others
    than its owner may read or write it: it signs city tokens."""
    path = secret_path(state_dir)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MissingSecret(f"{path} is accessible to other users (mode {stat.filemode(mode)}): "
                            f"`chmod 600 {path}` or delete it to get a new one")
    secret = path.read_text(encoding="utf-8").strip()
    if problem := secret_problem(secret):
        raise MissingSecret(f"{path}: {problem}; delete it to get a new one")
    return secret


def ensure_local_secret(state_dir: Path) -> str:
    """The state folder's secret, generated on first use: 48 random bytes, written with mode 0600
    from the start (O_EXCL: two launchers starting at once do not overwrite each other's)."""
    existing = read_local_secret(state_dir)
    if existing is not None:
        return existing
    path = secret_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_local_secret(state_dir) or ensure_local_secret(state_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    return secret


def with_local_secret(settings: PlatformSettings, *, create: bool) -> PlatformSettings:
    """These settings with a secret: JWT_SECRET when set (an operator's choice wins), else the state
    folder's (generated if `create`). MissingSecret when there is neither."""
    if settings.jwt_secret:
        return settings
    state_dir = settings.eldercare_state_dir
    secret = ensure_local_secret(state_dir) if create else read_local_secret(state_dir)
    if secret is None:
        raise MissingSecret(f"no JWT secret: JWT_SECRET is not set and {secret_path(state_dir)} does not exist "
                            "(`make up` creates it on its first start; or set JWT_SECRET)")
    return settings.model_copy(update={"jwt_secret": secret})
