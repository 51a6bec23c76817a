"""Encryption at rest for channel credentials and webhook secrets.

Keys come from ``TALLY_ENCRYPTION_KEYS`` (comma-separated Fernet keys, newest first, so a key can be
rotated without a migration). Without it, a key is derived from SECRET_KEY so a demo works; production
sets its own key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

PREFIX = "enc1:"


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    raw = [k.strip() for k in os.environ.get("TALLY_ENCRYPTION_KEYS", "").split(",") if k.strip()]
    if not raw:
        digest = hashlib.sha256(f"tally-credentials:{settings.SECRET_KEY}".encode()).digest()
        raw = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(k.encode()) for k in raw])


def encrypt(value: str) -> str:
    return PREFIX + _fernet().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    if not value.startswith(PREFIX):
        return value
    try:
        return _fernet().decrypt(value[len(PREFIX):].encode()).decode()
    except InvalidToken as exc:
        raise ValueError("Cannot decrypt a stored secret: TALLY_ENCRYPTION_KEYS does not hold its key.") from exc


class EncryptedTextField(models.TextField):
    """Stored encrypted; in Python it is the plain string."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)

    def value_to_string(self, obj):
        return ""  # never serialise secrets (dumpdata, admin history)


class EncryptedJSONField(models.TextField):
    """A JSON object stored encrypted."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return {}
        return json.loads(decrypt(value))

    def to_python(self, value):
        if isinstance(value, dict):
            return value
        if not value:
            return {}
        return json.loads(decrypt(value)) if isinstance(value, str) else value

    def get_prep_value(self, value):
        if value is None:
            value = {}
        if isinstance(value, str):
            value = json.loads(value or "{}")
        return encrypt(json.dumps(value, sort_keys=True))

    def value_to_string(self, obj):
        return ""  # never serialise secrets (dumpdata, admin history)
