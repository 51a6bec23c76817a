"""A distributed token bucket per channel, in Redis, shared by every worker on every host.

The bucket is one Lua script (atomic, using the Redis server's clock so hosts with skewed
clocks agree). It starts from the platform's published limit and is corrected by what each
response says is left (Shopify's call-limit header or its GraphQL cost points, BigCommerce's
requests-left) and by 429 Retry-After, which blocks the whole channel until that time.

For fixed-window limits (BigCommerce: 150 per 30 s) the bucket is sized so that
capacity + rate x window <= limit, which a token bucket must satisfy to never exceed a window.
"""

from __future__ import annotations

import time

from hub.redis import get_redis

# KEYS: one bucket per channel. ARGV: (capacity, rate per second, tokens wanted) per bucket, then the mode: '1' to
# take them, '0' only to say whether they are there, or 'R' and a number of ms to reserve them if they come within
# that time. Returns (granted 0/1, ms to wait) per bucket: a push round asks for all its channels in one round trip.
# A reservation takes the tokens at once, into debt, and the caller sleeps the wait returned: asked again after the
# wait, a request for many tokens (a reconciliation page, 25 of them) found them taken one at a time by pushers
# asking meanwhile and waited for ever; in debt, the bucket makes them wait behind it instead.
_ACQUIRE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
local mode = ARGV[#ARGV]
local take = mode == '1'
local reserve_ms = nil
if string.sub(mode, 1, 1) == 'R' then
  take = true
  reserve_ms = tonumber(string.sub(mode, 2))
end
for i = 1, #KEYS do
  local key = KEYS[i]
  local capacity = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local wanted = tonumber(ARGV[3 * i])
  local data = redis.call('HMGET', key, 'tokens', 'ts', 'blocked_until')
  local tokens = tonumber(data[1]) or capacity
  local ts = tonumber(data[2]) or now
  local blocked = tonumber(data[3]) or 0
  if now < blocked then
    out[#out + 1] = 0
    out[#out + 1] = blocked - now
  else
    tokens = math.min(capacity, tokens + math.max(now - ts, 0) * rate / 1000)
    local short_ms = 0
    if tokens < wanted then
      short_ms = math.ceil((wanted - tokens) * 1000 / rate)
    end
    if short_ms == 0 or (reserve_ms ~= nil and short_ms <= reserve_ms) then
      tokens = tokens - wanted
      out[#out + 1] = 1
      out[#out + 1] = short_ms
    else
      out[#out + 1] = 0
      out[#out + 1] = short_ms
    end
    if take then
      redis.call('HSET', key, 'tokens', tokens, 'ts', now)
      redis.call('PEXPIRE', key, 3600000)
    end
  end
end
return out
"""

# ARGV: what the platform says is left, the bucket's capacity and rate. Compared with what the bucket holds *now*,
# refilled for the time since its last use: compared with the stored count, a bucket emptied a while ago was left
# alone by "3 left" and then refilled itself past it on the next acquire.
_OBSERVE = """
local key = KEYS[1]
local remaining = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local data = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(data[1])
if tokens ~= nil then
  tokens = math.min(capacity, tokens + math.max(now - (tonumber(data[2]) or now), 0) * rate / 1000)
end
if tokens == nil or remaining < tokens then
  tokens = remaining
end
redis.call('HSET', key, 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', key, 3600000)
return 1
"""

_BLOCK = """
local key = KEYS[1]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', key, 'blocked_until')) or 0
if until_ms > current then
  redis.call('HSET', key, 'blocked_until', until_ms, 'tokens', 0, 'ts', until_ms)
end
redis.call('PEXPIRE', key, 3600000)
return until_ms
"""


class RateLimiter:
    def __init__(self, name: str, *, capacity: float, per_second: float):
        self.key = f"tally:ratelimit:{name}"
        self.capacity = capacity
        self.per_second = per_second
        redis = get_redis()
        self._acquire = redis.register_script(_ACQUIRE)
        self._observe = redis.register_script(_OBSERVE)
        self._block = redis.register_script(_BLOCK)

    def try_acquire(self, tokens: int = 1) -> float:
        """Take tokens now, or return how many seconds to wait before asking again (nothing taken)."""
        return try_acquire_each([self], tokens)[0]

    def acquire(self, tokens: float = 1, *, max_wait: float = 2.0) -> float:
        """Wait up to ``max_wait`` for tokens; return 0 when granted, else the wait needed (nothing taken then).

        Tokens that come within ``max_wait`` are reserved at once and waited for here, first come first served:
        requests asking after this one wait behind it (see _ACQUIRE)."""
        granted, wait_ms = self._acquire(keys=[self.key], args=[self.capacity, self.per_second, tokens,
                                                                  f"R{max(int(max_wait * 1000), 0)}"])
        if not granted:
            return wait_ms / 1000
        if wait_ms:
            time.sleep(wait_ms / 1000)
        return 0.0

    def refund(self, tokens: int = 1) -> None:
        """Give back tokens taken for a request that was not sent (capped at capacity on the next take)."""
        self._acquire(keys=[self.key], args=[self.capacity, self.per_second, -tokens, 1])

    def observe_remaining(self, remaining: float) -> None:
        """The platform says only this many calls are left: never believe we have more."""
        self._observe(keys=[self.key], args=[max(remaining, 0), self.capacity, self.per_second])

    def block_for(self, seconds: float) -> None:
        self._block(keys=[self.key], args=[int(seconds * 1000)])

    def reset(self) -> None:
        get_redis().delete(self.key)


def try_acquire_each(limiters: list[RateLimiter], tokens: int = 1) -> list[float]:
    """``try_acquire`` on several buckets in one round trip: per bucket, 0 when granted, else seconds to wait."""
    return _each(limiters, tokens, take=True)


def wait_each(limiters: list[RateLimiter], tokens: int = 1) -> list[float]:
    """Per bucket, 0 when it holds ``tokens`` now, else seconds to wait; nothing taken (one round trip for all)."""
    return _each(limiters, tokens, take=False)


def _each(limiters: list[RateLimiter], tokens: int, *, take: bool) -> list[float]:
    if not limiters:
        return []
    out = limiters[0]._acquire(keys=[x.key for x in limiters],
                               args=[*(v for x in limiters for v in (x.capacity, x.per_second, tokens)), int(take)])
    return [0.0 if granted else wait_ms / 1000 for granted, wait_ms in zip(out[::2], out[1::2], strict=True)]


# Margins under the published limits, so clock drift and in-flight requests never cross them: a tenth of the rate,
# and of the burst. A push takes its first token before it claims and reads stock, and sends after: on a loaded
# machine a request granted early reached the platform together with ones granted after it, and a full burst plus
# those crossed a leaky bucket of the same size (the sandbox refused one of 61 in the several-pushers test, full
# suite on a slow VM, 2026-12-07). A burst one tenth smaller absorbs that much jitter.
def limiter_for(channel) -> RateLimiter:
    capacity, per_second = channel.rate_limit
    return RateLimiter(f"channel:{channel.pk}", capacity=max(int(capacity * 0.9), 1), per_second=per_second * 0.9)
