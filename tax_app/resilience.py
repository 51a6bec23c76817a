"""Redis-backed answer cache and circuit breaker, shared by every web and worker process.

Keys live under ``tally:tax:`` (override with env ``TAX_REDIS_PREFIX``). Times are passed in explicitly
(``now``) so the breaker's cooldown can be exercised with a fixed clock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import redis
from django.conf import settings

log = logging.getLogger(__name__)


def prefix() -> str:
    return os.environ.get("TAX_REDIS_PREFIX", "tally:tax:")


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


def client() -> redis.Redis:
    return _client(getattr(settings, "REDIS_URL", "redis://127.0.0.1:6379/0"))


# --- cache ------------------------------------------------------------------------------------

def cache_ttl_seconds() -> int:
    return int(os.environ.get("TAX_CACHE_TTL", "3600"))


def rules_version() -> int:
    """Bumped on every rate table, rule or provider change, so cached answers never outlive their inputs."""
    try:
        raw = client().get(prefix() + "version")
    except redis.RedisError:
        return -1
    return int(raw or 0)


def bump_rules_version() -> None:
    try:
        client().incr(prefix() + "version")
    except redis.RedisError:
        log.warning("tax cache version bump failed; cached answers expire after %ss", cache_ttl_seconds())


def digest(normalised: dict) -> str:
    body = json.dumps(normalised, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def answer_key(version: int, request_digest: str) -> str:
    return f"{prefix()}answer:{version}:{request_digest}"


# One round trip for the hot path: read the rules version and the answer stored under it together.
_LOOKUP = """
local version = redis.call('GET', KEYS[1]) or '0'
return {version, redis.call('GET', ARGV[1] .. version .. ':' .. ARGV[2])}
"""


@lru_cache(maxsize=4)
def _lookup_script(url: str):
    return _client(url).register_script(_LOOKUP)


def cached_lookup(request_digest: str) -> tuple[int, dict | None]:
    """(rules version, cached answer or None); (-1, None) when Redis is unavailable."""
    try:
        script = _lookup_script(getattr(settings, "REDIS_URL", "redis://127.0.0.1:6379/0"))
        version, raw = script(keys=[prefix() + "version"], args=[prefix() + "answer:", request_digest])
    except redis.RedisError:
        log.warning("tax cache unavailable; answering uncached")
        return -1, None
    return int(version), (json.loads(raw) if raw else None)


def cache_get(key: str) -> dict | None:
    # Redis trouble must never break checkout: a miss just costs a provider call.
    try:
        raw = client().get(key)
    except redis.RedisError:
        log.warning("tax cache unavailable; answering uncached")
        return None
    return json.loads(raw) if raw else None


def cache_set(key: str, value: dict) -> None:
    try:
        client().set(key, json.dumps(value, separators=(",", ":")), ex=cache_ttl_seconds())
    except redis.RedisError:
        log.warning("tax cache unavailable; answer not cached")


# --- circuit breaker ----------------------------------------------------------------------------

_ALLOW = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then return 'closed' end
local now = tonumber(ARGV[1])
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  if now < opened + tonumber(ARGV[2]) then return 'reject' end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[3]))
  return 'probe'
end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now >= probe_until then
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[3]))
  return 'probe'
end
return 'reject'
"""

_FAIL = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local now = tonumber(ARGV[1])
if state ~= 'closed' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  return 'open'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  return 'open'
end
return 'closed'
"""


def _ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


@dataclass(frozen=True)
class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures -> half-open after ``cooldown_seconds``.

    Half-open lets one probe through at a time (others keep falling back); a successful probe closes the
    breaker, a failed one re-opens it for another cooldown. A probe that never reports (a crashed process)
    is given up after ``probe_seconds``. Only 5xx answers and timeouts/connection errors count; 4xx are
    our request's fault, not the provider's health.
    """

    name: str
    threshold: int = 5
    cooldown_seconds: int = 30
    probe_seconds: int = 10

    @property
    def key(self) -> str:
        return f"{prefix()}breaker:{self.name}"

    def allow(self, *, now: datetime) -> str:
        """'closed' (go ahead), 'probe' (go ahead as the half-open probe) or 'reject' (fall back)."""
        try:
            result = client().eval(_ALLOW, 1, self.key, _ms(now), self.cooldown_seconds * 1000, self.probe_seconds * 1000)
        except redis.RedisError:
            return "closed"
        return result.decode() if isinstance(result, bytes) else result

    def record_success(self) -> None:
        try:
            client().hset(self.key, mapping={"state": "closed", "failures": 0, "opened_at": 0, "probe_until": 0})
        except redis.RedisError:
            log.warning("breaker %s: could not record success", self.name)

    def record_failure(self, *, now: datetime) -> str:
        try:
            result = client().eval(_FAIL, 1, self.key, _ms(now), self.threshold)
        except redis.RedisError:
            return "closed"
        state = result.decode() if isinstance(result, bytes) else result
        if state == "open":
            log.warning("tax provider %s: circuit open, falling back to local rate tables", self.name)
        return state

    def state(self) -> dict[str, str]:
        raw = client().hgetall(self.key)
        data = {k.decode(): v.decode() for k, v in raw.items()}
        data.setdefault("state", "closed")
        return data
