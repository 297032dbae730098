"""Secrets at rest: tokens encrypted with MultiFernet, PBX keys found by a keyed hash.

Keys come from `B24APP_ENCRYPTION_KEYS`, newest first. Encryption always uses the newest key;
decryption tries each. Rotation: put a new key first, run `flask --app b24app keys rotate`, then
drop the old key.

A PBX key must be found from what the PBX presents without decrypting every row, so each stored
key also has an HMAC-SHA256 digest. The HMAC key is derived from each encryption key (HKDF), so a
lookup computes one digest per configured key and finds rows written under any of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import cached_property

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_LOOKUP_INFO = b"b24app lookup hash v1"


class SecretBox:
    """Encrypts, decrypts and hashes secrets with the configured keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys or not all(keys):
            raise ValueError("at least one encryption key is required")
        self._keys = keys
        self._multi = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._multi.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt with whichever configured key made it; InvalidToken if none did."""
        return self._multi.decrypt(ciphertext.encode()).decode()

    def reencrypt(self, ciphertext: str) -> str:
        """The same secret under the newest key (for `keys rotate`)."""
        return self._multi.rotate(ciphertext.encode()).decode()

    def lookup_hash(self, value: str) -> str:
        """The digest stored beside a secret, under the newest key (HMAC-SHA256, 64 hex digits)."""
        return hmac.new(self._hash_keys[0], value.encode(), hashlib.sha256).hexdigest()

    def lookup_hashes(self, value: str) -> list[str]:
        """Digests of `value` under every configured key, newest first (for lookups)."""
        return [
            hmac.new(key, value.encode(), hashlib.sha256).hexdigest() for key in self._hash_keys
        ]

    @cached_property
    def _hash_keys(self) -> list[bytes]:
        keys = []
        for key in self._keys:
            raw = base64.urlsafe_b64decode(key)
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LOOKUP_INFO)
            keys.append(hkdf.derive(raw))
        return keys


__all__ = ["InvalidToken", "SecretBox"]
