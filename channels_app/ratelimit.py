"""A distributed token bucket per channel, in Redis, shared by every worker on every host.

The bucket is one Lua script (atomic, using the Redis server's clock so hosts with skewed
clocks agree). It starts from the platform's published limit and is corrected by what each
response says is left (Shopify's call-limit header or its GraphQL cost points, BigCommerce's
requests-left) and by 429 Retry-After, which blocks the whole channel until that time.

For fixed-window limits (BigCommerce: 150 per 30 s) the bucket is sized so that
capacity + rate x window <= limit, which a token bucket must satisfy to never exceed a window.
"""

from __future__ import annotations

import math
import time

from hub.redis import get_redis

# KEYS: one bucket per channel. ARGV: (capacity, rate per second, tokens wanted) per bucket, then 1 to take them or
# 0 only to say whether they are there. Returns (granted 0/1, ms to wait) per bucket: a push round asks for all its
# channels in one round trip. A negative number wanted (a refund) is always granted.
_ACQUIRE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
local take = ARGV[#ARGV] == '1'
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
    if tokens >= wanted then
      tokens = tokens - wanted
      out[#out + 1] = 1
      out[#out + 1] = 0
    else
      out[#out + 1] = 0
      out[#out + 1] = math.ceil((wanted - tokens) * 1000 / rate)
    end
    if take then
      redis.call('HSET', key, 'tokens', tokens, 'ts', now)
      redis.call('PEXPIRE', key, 3600000)
    end
  end
end
return out
"""

# Gathering a request's tokens as they come (``RateLimiter.acquire``). KEYS: the bucket. ARGV: capacity, rate per
# second, tokens still wanted (a multiple of 0.001). Returns (thousandths taken, ms until the next token could be,
# 1 if the bucket was contended), or (-1, ms a 429 blocks for). All of them if they are there; else, from a bucket
# at least half full (nobody is using it much) all the whole tokens it can, from a lower one one token a call, and
# the caller skips a token before it asks again: it and the pushes asking meanwhile share the refill.
# Asked for all at once, a request for many tokens (a reconciliation page, 25) never found them while pushes took
# one at a time as they came back, and gave up; reserved ahead in one piece, it held every push back until its
# tokens had come (seconds on a Shopify store's 9 a second; review, 2026-12-07).
_GATHER = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'blocked_until')
local blocked = tonumber(data[3]) or 0
if now < blocked then
  return {-1, blocked - now, 0}
end
local tokens = math.min(capacity, (tonumber(data[1]) or capacity) + math.max(now - (tonumber(data[2]) or now), 0) * rate / 1000)
local contended = tokens < capacity / 2
local taken = 0
if tokens >= wanted then
  taken = wanted
elseif wanted >= 1 then
  taken = math.max(math.min(math.floor(tokens), math.floor(wanted)), 0)
  if contended then
    taken = math.min(taken, 1)
  end
end
tokens = tokens - taken
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], 3600000)
local next_one = math.min(wanted - taken, 1)
return {math.floor(taken * 1000 + 0.5), math.ceil(math.max(next_one - tokens, 0) * 1000 / rate), contended and 1 or 0}
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


# The shortest and the longest pause of a request gathering its tokens between two asks.
MIN_PAUSE = 0.005
MAX_PAUSE = 1.0
# Requests for this many tokens or more share a contended bucket's refill with the others (see _GATHER).
SHARE_FROM = 4


class RateLimiter:
    def __init__(self, name: str, *, capacity: float, per_second: float):
        self.key = f"tally:ratelimit:{name}"
        self.capacity = capacity
        self.per_second = per_second
        redis = get_redis()
        self._acquire = redis.register_script(_ACQUIRE)
        self._gather = redis.register_script(_GATHER)
        self._observe = redis.register_script(_OBSERVE)
        self._block = redis.register_script(_BLOCK)

    def try_acquire(self, tokens: int = 1) -> float:
        """Take tokens now, or return how many seconds to wait before asking again (nothing taken)."""
        return try_acquire_each([self], tokens)[0]

    def acquire(self, tokens: float = 1, *, max_wait: float = 2.0) -> float:
        """Wait up to ``max_wait`` for tokens; return 0 when granted, else the wait needed (nothing kept then).

        The tokens are gathered as they come (see _GATHER): a request for many shares the refill with the pushes
        asking meanwhile, about half each, neither starved nor starving them. A 429 meanwhile forfeits what was
        gathered (the platform said wait: sent after it, they would go out in one burst)."""
        wanted = math.ceil(max(float(tokens), 0.0) * 1000) / 1000
        rate = max(self.per_second, 1e-6)
        deadline = time.monotonic() + max_wait
        gathered = 0.0
        while True:
            taken, wait_ms, contended = self._gather(keys=[self.key],
                                                     args=[self.capacity, rate, round(wanted - gathered, 3)])
            if taken < 0:  # blocked by a 429
                gathered, needed, pause = 0.0, wait_ms / 1000 + wanted / rate, wait_ms / 1000
            else:
                gathered += taken / 1000
                if gathered >= wanted - 1e-9:
                    return 0.0
                needed = max(wait_ms / 1000, (wanted - gathered) / rate)
                # A large request on a contended bucket leaves the next token to the others and asks for the one
                # after it; a small one (a push's request, a conflict's re-read) takes them as they come.
                share = contended and taken and wanted >= SHARE_FROM
                pause = max(wait_ms / 1000 + (1 / rate if share else 0), MIN_PAUSE)
            if time.monotonic() + needed > deadline:
                if gathered:
                    self.refund(gathered)
                return needed
            time.sleep(min(pause, MAX_PAUSE))

    def refund(self, tokens: float = 1) -> None:
        """Give back tokens taken for a request that was not sent (capped at capacity on the next take)."""
        self._acquire(keys=[self.key], args=[self.capacity, self.per_second, -tokens, 1])

    def observe_remaining(self, remaining: float) -> None:
        """The platform says only this many calls are left: never believe we have more."""
        self._observe(keys=[self.key], args=[max(remaining, 0), self.capacity, self.per_second])

    def block_for(self, seconds: float) -> None:
        self._block(keys=[self.key], args=[int(seconds * 1000)])

    def reset(self) -> None:
        get_redis().delete(self.key)


def request_sized(items: list, most: int, cost, capacity: float):
    """Slices of ``items`` of at most ``most``, each costing (``cost(slice)`` tokens) no more than the bucket holds:
    more than that is never there at once (WooCommerce variations cost a request each: 100 against a bucket of 22
    waited for ever; a Shopify catalog batch, a call an item, 20 against a channel's bucket of 9, failed every run)."""
    start, step = 0, max(most, 1)
    while start < len(items):
        end = min(start + step, len(items))
        while end - start > 1 and cost(items[start:end]) > capacity:
            end = start + (end - start) // 2
        yield items[start:end]
        start = end


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
    return with_margin(f"channel:{channel.pk}", *channel.rate_limit)


def with_margin(name: str, capacity: float, per_second: float) -> RateLimiter:
    """A bucket for a platform's published limit, a tenth short of it (other apps of the store share the limit)."""
    return RateLimiter(name, capacity=max(int(capacity * 0.9), 1), per_second=per_second * 0.9)
