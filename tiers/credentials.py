"""appIds and keys, read from the environment only (the site file names the variables, never holds the values)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tiers.crypto import PayloadCipher, cipher_for, key_bytes

MIN_KEY_BYTES = 16  # the HMAC-SHA256 sign key; AES and SM4 keys have their own fixed lengths


class CredentialsError(ValueError):
    """A missing or unusable appId, key or IV; names the environment variable and the setting that names it."""


@dataclass(frozen=True)
class Credentials:
    """One sender's identity: its appId, the key that signs (and encrypts) its messages, and its cipher."""

    app_id: str
    key: bytes
    cipher: PayloadCipher | None


def credentials_from_env(
    where: str,
    app_id_env: str,
    key_env: str,
    encryption: str,
    iv_env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """Credentials from the environment variables a setting (``where``, e.g. ``uplink.targets[0]``) names."""
    env = os.environ if environ is None else environ

    def read(name: str, what: str) -> str:
        value = env.get(name, "")
        if not value:
            raise CredentialsError(f"{where}: environment variable {name} ({what}) is not set")
        return value

    app_id = read(app_id_env, "appId")
    if len(app_id) > 64:
        raise CredentialsError(f"{where}: the appId in {app_id_env} is longer than 64 characters")
    try:
        key = key_bytes(read(key_env, "key"))
        iv = key_bytes(read(iv_env, "SM4 IV")) if iv_env else None
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a key is at least {MIN_KEY_BYTES} bytes, not {len(key)}")
        cipher = cipher_for(encryption, key, iv)
    except ValueError as exc:
        raise CredentialsError(f"{where}: {key_env}{'/' + iv_env if iv_env else ''}: {exc}") from None
    return Credentials(app_id, key, cipher)
