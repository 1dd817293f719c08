"""Secrets kept in the database (a judge's API key), encrypted at rest.

`encrypt` / `decrypt` use Fernet (AES-128-CBC + HMAC-SHA256, from
`cryptography`): a token is authenticated, so a tampered or foreign value
fails loudly instead of decrypting to garbage. The keys come from
FIELD_ENCRYPTION_KEY (comma-separated; the first encrypts, all decrypt, so
a key is rotated by putting the new one first); without it one key is
derived from SECRET_KEY with HKDF-SHA256, which ties stored secrets to
SECRET_KEY — changing it then makes them unreadable (the user re-enters the
key), never readable by the wrong process.

Decrypt only where the secret is used (the evaluation runner); a decrypted
value must never reach a log line, an error text, a page or a response."""
from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

# Fixed: changing it changes the derived key (and orphans stored secrets).
_HKDF_INFO = b"workbench field encryption v1"


class SecretUnreadable(Exception):
    """The token was made with another key (SECRET_KEY or FIELD_ENCRYPTION_KEY
    changed) or was altered. The message never contains the token."""


def derive_key(secret_key: str) -> bytes:
    """A Fernet key from SECRET_KEY: HKDF-SHA256 (no salt: the input is
    already a high-entropy random key), 32 bytes, url-safe base64."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    material = [key.encode() for key in keys] or [derive_key(secret_key)]
    return MultiFernet([Fernet(key) for key in material])


def _current() -> MultiFernet:
    # Read settings on each call (cached per value) so tests that override
    # them get the matching key.
    return _fernet(tuple(getattr(settings, "FIELD_ENCRYPTION_KEYS", ())), settings.SECRET_KEY)


def encrypt(text: str) -> str:
    """A token (ASCII) for `text`; each call gives a different token."""
    return _current().encrypt(text.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        raise SecretUnreadable(
            "a stored secret cannot be decrypted: SECRET_KEY or FIELD_ENCRYPTION_KEY changed since it was saved"
        ) from None
