"""The first admin: `SVDIFF_BOOTSTRAP_ADMIN_KEY`, or in development a key kept in the data folder."""

from __future__ import annotations

import os

from core.accounts import ensure_admin_key, generate_api_key
from core.db import session_scope
from core.runtime import Runtime


def development_key_file(runtime: Runtime) -> str:
    return str(runtime.settings.data_dir / "admin.key")


def bootstrap_admin(runtime: Runtime) -> str | None:
    """Make the bootstrap key an admin's. Returns the development key to print, or None."""
    settings = runtime.settings
    if settings.bootstrap_admin_key:
        with session_scope(runtime.sessions) as session:
            ensure_admin_key(session, settings.bootstrap_admin_key)
        return None
    if settings.environment != "development":
        return None
    path = development_key_file(runtime)
    if os.path.exists(path):
        with open(path) as handle:
            key = handle.read().strip()
    else:
        key = generate_api_key()
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write(key + "\n")
    with session_scope(runtime.sessions) as session:
        admin = ensure_admin_key(session, key, name="development admin")
    return key if admin is not None else None
