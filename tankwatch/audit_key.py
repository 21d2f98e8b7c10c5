"""The audit journal's HMAC key: from the environment or a 0600 key file, never from the database."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from tankwatch.site import SecuritySettings

AUDIT_KEY_ENV = "TANKWATCH_AUDIT_KEY"
AUDIT_KEY_FILE_ENV = "TANKWATCH_AUDIT_KEY_FILE"
DEMO_KEY_FILE = "audit.key"  # in the demo's data folder
MIN_KEY_BYTES = 32


class AuditKeyError(ValueError):
    """No usable audit key, with what to do about it."""


def load_audit_key(
    settings: SecuritySettings | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    demo_dir: Path | None = None,
) -> bytes:
    """The key: TANKWATCH_AUDIT_KEY, else the file TANKWATCH_AUDIT_KEY_FILE or ``security.audit_key_file`` names.

    Without either, the demo (``demo_dir`` given) generates ``<demo_dir>/audit.key`` once and reuses it; anything
    else raises AuditKeyError, so a production journal is never written with a key nobody can verify it with.
    """
    env = os.environ if environ is None else environ
    if env.get(AUDIT_KEY_ENV):
        return _checked(env[AUDIT_KEY_ENV].encode(), AUDIT_KEY_ENV)
    file = env.get(AUDIT_KEY_FILE_ENV) or (settings.audit_key_file if settings else None)
    if file:
        return read_key_file(Path(file))
    if demo_dir is not None:
        return demo_key(demo_dir)
    raise AuditKeyError(
        f"no audit key: set {AUDIT_KEY_ENV} (32+ random bytes) or {AUDIT_KEY_FILE_ENV} / security.audit_key_file "
        "(a file of mode 0600 outside the database); e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    )


def read_key_file(path: Path) -> bytes:
    """The key in ``path``, which must exist and be readable by its owner only."""
    try:
        mode = path.stat().st_mode
        key = path.read_bytes().strip()
    except OSError as exc:
        raise AuditKeyError(f"audit key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise AuditKeyError(f"audit key file {path} has mode {mode & 0o777:04o}; make it 0600 (chmod 600 {path})")
    return _checked(key, str(path))


def demo_key(demo_dir: Path) -> bytes:
    """The demo's key in ``demo_dir/audit.key``, generated (0600) the first time."""
    path = demo_dir / DEMO_KEY_FILE
    if not path.exists():
        demo_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
    return read_key_file(path)


def _checked(key: bytes, where: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError(f"audit key from {where} has {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes")
    return key
