"""Encryption of personal data at rest (AES-256-GCM) and keyed hashing of identifiers (HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12
_FORMAT_V1 = b"\x01"


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=b"recapture", info=purpose).derive(secret)


class Sealer:
    """Seals bytes so that only a holder of the installation's secret key can read them."""

    def __init__(self, secret: str) -> None:
        material = secret.encode()
        self._aead = AESGCM(_derive(material, b"seal-v1"))
        # Copying a keyed HMAC is cheaper than keying a new one for every identifier.
        self._hash_key = _derive(material, b"identifier-hash-v1")
        self._hash_template = hmac.new(self._hash_key, digestmod=hashlib.sha256)

    def seal(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _FORMAT_V1 + nonce + self._aead.encrypt(nonce, plaintext, None)

    def open(self, sealed: bytes) -> bytes:
        if sealed[:1] != _FORMAT_V1:
            raise ValueError("unknown sealed format")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        return self._aead.decrypt(nonce, body, None)

    def identifier_hash(self, shop: str, kind: str, value: str) -> bytes:
        # The shop is part of the hash so that one store's identifiers never match another's.
        keyed = self._hash_template.copy()
        keyed.update(f"{shop}\x1f{kind}\x1f{value}".encode())
        return keyed.digest()
