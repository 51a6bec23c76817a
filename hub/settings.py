"""Tally settings. Every knob comes from the environment with a safe default.

With no DATABASE_URL the hub runs on an embedded SQLite file tuned for several
processes (the single-box demo); tests and production use PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TALLY_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# A random key per process would break sessions across gunicorn workers, so the
# fallback is fixed but loudly insecure; production sets SECRET_KEY.
SECRET_KEY = os.environ.get("SECRET_KEY", "insecure-dev-key-set-SECRET_KEY-in-production")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "http://localhost:8000,http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_celery_beat",
    "hub",
    "inventory_app",
    "channels_app",
    "tax_app",
    "picking_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "hub.observability.CorrelationIdMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "hub" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database_config() -> dict:
    url = os.environ.get("DATABASE_URL")
    if url:
        config = dj_database_url.parse(url, conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")))
        if config["ENGINE"].endswith("postgresql"):
            config.setdefault("OPTIONS", {})
            # No per-request health ping: it costs a round trip on every webhook; a broken connection
            # errors once and Django drops it at the end of that request.
            config["CONN_HEALTH_CHECKS"] = False
            # The stock operations' statements (inventory_app/statements.py) are prepared once per connection
            # (Django's own queries never are: its cursors bind client-side). DB_PREPARED_STATEMENTS=false
            # for a transaction-pooling pgbouncer older than 1.21, which cannot follow prepared statements.
            if os.environ.get("DB_PREPARED_STATEMENTS", "true").lower() in ("1", "true", "yes", "on"):
                config["OPTIONS"]["prepare_threshold"] = 1
        return config
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Several processes (web, worker, beat) share the file: WAL lets readers run
    # beside the writer, IMMEDIATE takes the write lock up front so two writers
    # queue instead of deadlocking on lock upgrade, and the timeout makes them wait.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SQLITE_PATH", str(VAR_DIR / "tally.sqlite3")),
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
        },
    }


DATABASES = {"default": _database_config()}
# Behind a transaction-pooling proxy (PgBouncer, pgcat, RDS Proxy) a session-level SET lands on a server
# connection that other clients get next, so nothing here may change the session: the push rounds' commits
# then wait for the disk like every other (inventory_app.statements.commits_without_flush_wait).
# DB_PREPARED_STATEMENTS=false is only ever set behind such a pooler, so it implies this.
DB_TRANSACTION_POOLER = env_bool("DB_TRANSACTION_POOLER", False) or not env_bool("DB_PREPARED_STATEMENTS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# Webhook bodies above 1 MiB are refused with 413 (channels_app.inbound.MAX_BODY_BYTES).
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024 + 1

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "hub.api.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Tally API",
    "DESCRIPTION": "Canonical inventory, reservations, channels, tax and picking for multi-channel commerce.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Only webhooks, health and metrics are public; the schema and docs need a login or a token.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
}

# Celery: at-least-once delivery. Rows in the database are the record; a lost
# message costs latency, never data, because sweepers find unfinished rows.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Longer than any task's run time or countdown (both are kept to seconds): an
# unacked message is redelivered only after this, so it must not fire early.
CELERY_VISIBILITY_TIMEOUT = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "inbound.*": {"queue": "inbound"},
    "push.*": {"queue": "push"},
    "batch.*": {"queue": "batch"},
}
CELERY_BEAT_SCHEDULER = "hub.beat:SingleBeatScheduler"
CELERY_TIMEZONE = "UTC"
# Keep Django's LOGGING (JSON, correlation ids, redaction) in workers instead of Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes the database connection around every task unless told to reuse it, and a
# fresh PostgreSQL connection costs more than most of our tasks. Reuse it; hub.celery still drops a
# broken or over-age connection (CONN_MAX_AGE) around each task with close_old_connections.
CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "1000"))
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Workers run at this CPU niceness (0-19). Where they share a host with the web processes, a webhook is
# answered first and applied after: the platform times the answer out in seconds (and Shopify deletes a
# subscription that keeps failing), while the inbox holds what is received until a worker has the CPU. On a
# host of their own it changes nothing.
TALLY_WORKER_NICE = min(max(int(os.environ.get("TALLY_WORKER_NICE", "10")), 0), 19)

# Outgoing events to loopback and private addresses (an ERP inside the merchant's network): off by default, since the
# URL's error answers are shown in the admin (hub/addresses.py). Link-local and metadata addresses are refused regardless.
TALLY_EVENTS_ALLOW_PRIVATE_URLS = os.environ.get("TALLY_EVENTS_ALLOW_PRIVATE_URLS", "0").lower() in ("1", "true", "yes")
# Reservations without an explicit TTL hold stock this long.
TALLY_DEFAULT_RESERVATION_TTL = int(os.environ.get("TALLY_DEFAULT_RESERVATION_TTL", "900"))
# An Idempotency-Key left "in progress" longer than this (a crashed request) may be retaken.
TALLY_IDEMPOTENCY_LOCK_SECONDS = int(os.environ.get("TALLY_IDEMPOTENCY_LOCK_SECONDS", "60"))

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
# JSON lines by default (for log shippers); LOG_FORMAT=plain for a terminal.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "hub.observability.RedactFilter"},
                "task_success": {"()": "hub.observability.TaskSuccessFilter"}},
    "formatters": {
        "json": {"()": "hub.observability.JsonFormatter"},
        "plain": {"()": "hub.observability.PlainFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain" if LOG_FORMAT == "plain" else "json",
                    "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"},
                # Celery's line per successful task, off unless LOG_TASK_SUCCESS (hub.observability.TaskSuccessFilter).
                "celery.app.trace": {"filters": [] if env_bool("LOG_TASK_SUCCESS", False) else ["task_success"]}},
}
