"""Payload ciphers: the GM/T 0002-2012 and FIPS-197 known answers, and SM4-CBC agreeing with gmssl (independent)."""

from __future__ import annotations

import base64
import os

import pytest
from gmssl.sm4 import SM4_DECRYPT, SM4_ENCRYPT, CryptSM4

from tiers.credentials import CredentialsError, credentials_from_env
from tiers.crypto import AesEcbCipher, CipherError, Sm4CbcCipher, cipher_for, key_bytes

GMT_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")  # GM/T 0002-2012 Appendix A, example 1
GMT_CIPHERTEXT = "681edf34d206965e86b3e94f536e4246"


def test_sm4_matches_the_gmt_0002_known_answer() -> None:
    # CBC with a zero IV: the first block is the plain block cipher of the first plaintext block.
    hex_text = Sm4CbcCipher(GMT_KEY, iv=bytes(16)).encrypt(GMT_KEY)
    assert hex_text[:32] == GMT_CIPHERTEXT
    assert len(hex_text) == 64  # one block of PKCS7 padding follows a whole block


def test_aes_matches_the_fips_197_known_answer() -> None:
    key = bytes(range(16))  # FIPS-197 Appendix C.1
    raw = base64.b64decode(AesEcbCipher(key).encrypt(bytes.fromhex("00112233445566778899aabbccddeeff")))
    assert raw[:16].hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000])
def test_sm4_cbc_agrees_with_gmssl_both_ways(size: int) -> None:
    key, iv, data = os.urandom(16), os.urandom(16), os.urandom(size)
    ours = Sm4CbcCipher(key, iv)
    theirs_enc = CryptSM4(SM4_ENCRYPT)
    theirs_enc.set_key(key, SM4_ENCRYPT)
    assert ours.encrypt(data) == theirs_enc.crypt_cbc(iv, data).hex()
    theirs_dec = CryptSM4(SM4_DECRYPT)
    theirs_dec.set_key(key, SM4_DECRYPT)
    random_iv = Sm4CbcCipher(key).encrypt(data)  # tankwatch default: IV first, then the ciphertext
    raw = bytes.fromhex(random_iv)
    assert theirs_dec.crypt_cbc(raw[:16], raw[16:]) == data
    assert Sm4CbcCipher(key).decrypt(random_iv) == data and ours.decrypt(ours.encrypt(data)) == data


def test_random_ivs_differ_per_message() -> None:
    cipher = Sm4CbcCipher(GMT_KEY)
    assert cipher.encrypt(b"same") != cipher.encrypt(b"same")


@pytest.mark.parametrize(("cipher", "text", "says"), [
    (AesEcbCipher(b"k" * 16), "not base64!", "Base64"),
    (AesEcbCipher(b"k" * 16), base64.b64encode(b"x" * 15).decode(), "multiple of 16"),
    (AesEcbCipher(b"k" * 16), AesEcbCipher(b"j" * 16).encrypt(b"[1,2,3]"), "padding"),
    (Sm4CbcCipher(b"k" * 16), "zz", "hex"),
    (Sm4CbcCipher(b"k" * 16), "00" * 16, "multiple of 16"),
])
def test_undecryptable_text_is_a_cipher_error(cipher, text: str, says: str) -> None:  # noqa: ANN001
    with pytest.raises(CipherError, match=says):
        cipher.decrypt(text)


def test_keys_from_the_environment() -> None:
    assert key_bytes("hex:00ff") == b"\x00\xff" and key_bytes("abc") == b"abc"
    env = {"APP": "ent-1", "KEY": "hex:" + GMT_KEY.hex(), "SHORT": "short"}
    creds = credentials_from_env("uplink.targets[0]", "APP", "KEY", "sm4", environ=env)
    assert creds.app_id == "ent-1" and creds.key == GMT_KEY and creds.cipher.name == "sm4"
    with pytest.raises(CredentialsError, match=r"uplink.targets\[0\]: environment variable NOPE \(appId\) is not set"):
        credentials_from_env("uplink.targets[0]", "NOPE", "KEY", "none", environ=env)
    with pytest.raises(CredentialsError, match="SHORT: a key is at least 16 bytes"):
        credentials_from_env("x", "APP", "SHORT", "none", environ=env)
    with pytest.raises(CredentialsError, match="an AES key is 16, 24 or 32 bytes, not 20"):
        credentials_from_env("x", "APP", "K20", "aes", environ={**env, "K20": "k" * 20})
    with pytest.raises(ValueError, match="unknown encryption"):
        cipher_for("des", b"k" * 16)
