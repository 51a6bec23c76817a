"""Settings for the test suite: real PostgreSQL and real Redis, never SQLite."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tally")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

from hub.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405 - threads in concurrency tests open their own
TALLY_EVENTS_ALLOW_PRIVATE_URLS = True  # the suite's receivers listen on 127.0.0.1
