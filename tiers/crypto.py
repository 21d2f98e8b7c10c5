"""Payload encryption of the ``data`` member: none, AES-ECB/PKCS7/Base64 (Jiangsu), SM4-CBC/PKCS7/hex (MEM)."""

from __future__ import annotations

import base64
import binascii
import os
from typing import Protocol

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_BYTES = 16  # AES and SM4 alike


class CipherError(ValueError):
    """Ciphertext that does not decrypt with this key (wrong key, encoding, padding or length)."""


class PayloadCipher(Protocol):
    """Turns the records' JSON text into the ``data`` string and back."""

    name: str

    def encrypt(self, plaintext: bytes) -> str:
        """The ``data`` string for these bytes."""
        ...

    def decrypt(self, text: str) -> bytes:
        """The bytes of a ``data`` string (CipherError when it is not this cipher's)."""
        ...


def key_bytes(text: str) -> bytes:
    """A key (or IV) as given in the environment: ``hex:`` followed by hex digits, or else the text's UTF-8 bytes."""
    if text.startswith("hex:"):
        try:
            return bytes.fromhex(text[4:])
        except ValueError:
            raise ValueError("a 'hex:' key must be followed by an even number of hex digits") from None
    return text.encode()


def _pad(plaintext: bytes) -> bytes:
    padder = padding.PKCS7(BLOCK_BYTES * 8).padder()
    return padder.update(plaintext) + padder.finalize()


def _unpad(padded: bytes) -> bytes:
    unpadder = padding.PKCS7(BLOCK_BYTES * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CipherError("bad padding: wrong key or not this cipher's ciphertext") from None


class AesEcbCipher:
    """AES (128/192/256-bit key), ECB mode, PKCS7 padding, standard Base64: the Jiangsu platform's choice."""

    name = "aes"

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError(f"an AES key is 16, 24 or 32 bytes, not {len(key)}")
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305 - the platform's mode, documented

    def encrypt(self, plaintext: bytes) -> str:
        """Base64 of the ECB ciphertext of the padded bytes."""
        encryptor = self._cipher.encryptor()
        return base64.b64encode(encryptor.update(_pad(plaintext)) + encryptor.finalize()).decode()

    def decrypt(self, text: str) -> bytes:
        """Bytes from Base64 ECB ciphertext."""
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise CipherError("data is not standard Base64") from None
        if not raw or len(raw) % BLOCK_BYTES:
            raise CipherError(f"ciphertext of {len(raw)} bytes is not a positive multiple of {BLOCK_BYTES}")
        decryptor = self._cipher.decryptor()
        return _unpad(decryptor.update(raw) + decryptor.finalize())


class Sm4CbcCipher:
    """SM4 (GM/T 0002-2012), CBC mode, PKCS7 padding, lower-case hex: the MEM IoT platform's choice.

    With a fixed IV (issued by the platform, as MEM does) the hex is the ciphertext alone; without one each message
    gets a random IV, written as the first 16 bytes before the ciphertext.
    """

    name = "sm4"

    def __init__(self, key: bytes, iv: bytes | None = None) -> None:
        if len(key) != 16:
            raise ValueError(f"an SM4 key is 16 bytes, not {len(key)}")
        if iv is not None and len(iv) != 16:
            raise ValueError(f"an SM4 IV is 16 bytes, not {len(iv)}")
        self._key, self._iv = key, iv

    def _cipher(self, iv: bytes) -> Cipher:
        return Cipher(algorithms.SM4(self._key), modes.CBC(iv))

    def encrypt(self, plaintext: bytes) -> str:
        """Hex of ``[IV ‖] CBC ciphertext``."""
        iv = self._iv or os.urandom(BLOCK_BYTES)
        encryptor = self._cipher(iv).encryptor()
        body = encryptor.update(_pad(plaintext)) + encryptor.finalize()
        return (body if self._iv else iv + body).hex()

    def decrypt(self, text: str) -> bytes:
        """Bytes from hex ``[IV ‖] CBC ciphertext``."""
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise CipherError("data is not hex") from None
        iv, body = (self._iv, raw) if self._iv else (raw[:BLOCK_BYTES], raw[BLOCK_BYTES:])
        if not body or len(body) % BLOCK_BYTES:
            raise CipherError(f"ciphertext of {len(body)} bytes is not a positive multiple of {BLOCK_BYTES}")
        decryptor = self._cipher(iv).decryptor()
        return _unpad(decryptor.update(body) + decryptor.finalize())


def cipher_for(encryption: str, key: bytes, iv: bytes | None = None) -> PayloadCipher | None:
    """The cipher a target or sender is configured with; None for ``none``."""
    if encryption == "none":
        return None
    if encryption == "aes":
        return AesEcbCipher(key)
    if encryption == "sm4":
        return Sm4CbcCipher(key, iv)
    raise ValueError(f"unknown encryption {encryption!r} (none, aes or sm4)")
