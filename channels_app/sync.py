"""Level-triggered sync state: stock writes mark listings out of date; pushers are woken after commit.

``mark_listings_dirty`` runs inside every stock operation's transaction (registered with
``inventory_app.stock.on_stock_changed``): it bumps ``desired_version`` of every listing whose
number can move (the SKU's own and those of bundles containing it). The quantity itself is
computed by the pusher from committed stock when it claims the listing, so two concurrent writes
to a bundle's components can never leave a half-seen number behind.
"""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django.db.models import F

from channels_app.models import Channel, Listing
from hub.redis import get_redis
from inventory_app.models import BundleComponent

log = logging.getLogger(__name__)
WAKE_TTL_SECONDS = 5


def mark_listings_dirty(sku_ids: set[int], context: dict) -> None:
    if not sku_ids:
        return
    ids = sorted(sku_ids)
    placeholders = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Listing._meta.db_table} SET desired_version = desired_version + 1, "
            f"dirty_since = COALESCE(dirty_since, %s), "
            f"status = CASE WHEN status = 'failed' THEN status ELSE 'pending' END "
            f"WHERE sku_id IN ({placeholders}) OR sku_id IN "
            f"(SELECT bundle_id FROM {BundleComponent._meta.db_table} WHERE component_id IN ({placeholders})) "
            f"RETURNING channel_id",
            [context["occurred_at"], *ids, *ids],
        )
        channel_ids = {row[0] for row in cursor.fetchall()}
    if channel_ids:
        transaction.on_commit(lambda: wake_pushers(channel_ids))


def wake_pushers(channel_ids, *, countdown: float | None = None) -> None:
    """Enqueue one push task per channel unless one is already queued (the flag coalesces bursts).

    The pusher clears the flag before it claims, so a change committed after the clear sets the
    flag again and enqueues a new task, and a change committed before it is seen by the claim.
    """
    from channels_app.tasks import push_channel

    redis = get_redis()
    for channel_id in channel_ids:
        try:
            if countdown is None and not redis.set(wake_key(channel_id), 1, nx=True, ex=WAKE_TTL_SECONDS):
                continue
            push_channel.apply_async(args=[channel_id], countdown=countdown)
        except Exception:  # noqa: BLE001 - the sweeper finds dirty listings; a lost wake-up costs seconds
            log.warning("could not wake the pusher", extra={"channel_id": channel_id})


def wake_key(channel_id: int) -> str:
    return f"tally:push:wake:{channel_id}"


def mark_channel_dirty(channel: Channel) -> int:
    """Force a full resync: every listing of the channel is pushed again."""
    with transaction.atomic():
        count = Listing.objects.filter(channel=channel).update(
            desired_version=F("desired_version") + 1, status="pending", attempts=0, next_attempt_at=None,
            last_error="")
        transaction.on_commit(lambda: wake_pushers([channel.pk]))
    return count

