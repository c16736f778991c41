"""Fernet keys from an operator's secret (`session_secret`, `token_key`).

One derivation for every sealed thing the gateway makes: session ids, backend tokens at
rest, sign-in links and states. The secret may be any string of any length, so it goes
through HKDF-SHA256; `info` names what a key is for, so one secret never gives two uses
the same key.
"""

from __future__ import annotations

from base64 import urlsafe_b64encode

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["fernet_for"]


def fernet_for(secret: str, info: bytes) -> Fernet:
    """The Fernet (AES and HMAC) keyed by `secret` for the use `info` names."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret.encode())
    return Fernet(urlsafe_b64encode(key))
