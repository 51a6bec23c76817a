"""One Redis client per process for rate-limit buckets, wake-up flags and caches (never the only copy)."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, health_check_interval=30, socket_timeout=5, socket_connect_timeout=2)


def get_redis() -> redis.Redis:
    return _client(settings.REDIS_URL)
