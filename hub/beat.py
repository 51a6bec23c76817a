"""Beat that refuses to run twice.

Two beats would fire every schedule twice. The scheduler holds a Redis lock (refreshed on every
tick) and a second beat exits at start with a clear message. If the holder dies, its lock
expires after ``LOCK_TTL`` seconds and a new beat can take over.
"""

from __future__ import annotations

import logging
import os
import socket

from django_celery_beat.schedulers import DatabaseScheduler

log = logging.getLogger(__name__)
LOCK_KEY = "tally:beat:lock"
LOCK_TTL = int(os.environ.get("TALLY_BEAT_LOCK_TTL", "30"))


class SingleBeatScheduler(DatabaseScheduler):
    def __init__(self, *args, **kwargs):
        # One token per process: celery may build the scheduler more than once in the same beat.
        self._token = f"{socket.gethostname()}:{os.getpid()}"
        self._take_lock()
        super().__init__(*args, **kwargs)

    def _take_lock(self) -> None:
        from hub.redis import get_redis

        redis = get_redis()
        if not redis.set(LOCK_KEY, self._token, nx=True, ex=LOCK_TTL):
            holder = redis.get(LOCK_KEY)
            if holder == self._token.encode():
                return
            raise SystemExit(f"Another celery beat is running ({holder!r}); only one may run at a time. "
                             f"If it died, its lock expires within {LOCK_TTL}s.")

    def tick(self, *args, **kwargs):
        from redis.exceptions import RedisError

        from hub.redis import get_redis

        try:
            redis = get_redis()
            # Refresh only our own lock; losing it means another beat took over, so stop. None: Redis came
            # back empty after a restart, and the lock is ours to take again.
            if redis.get(LOCK_KEY) not in (self._token.encode(), None):
                raise SystemExit("The beat lock now belongs to another beat; exiting.")
            redis.set(LOCK_KEY, self._token, ex=LOCK_TTL)
        except RedisError as exc:
            # Redis is also the broker: nothing could be sent now anyway. A beat that died here would leave
            # the sweepers and reservation expiry stopped for good (measured: the chaos run never drained).
            log.warning("beat: Redis unreachable (%s); waiting for it", exc)
            return 1.0
        return min(super().tick(*args, **kwargs), LOCK_TTL / 3)

    def close(self):
        from redis.exceptions import RedisError

        from hub.redis import get_redis

        try:
            redis = get_redis()
            if redis.get(LOCK_KEY) == self._token.encode():
                redis.delete(LOCK_KEY)
        except RedisError:
            pass  # the lock expires by itself
        finally:
            super().close()
