"""Writes to channel configuration (the API and the admin both call these)."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from channels_app import allocation
from channels_app.models import Channel, ChannelLocation, Listing
from channels_app.rules import RULE_FIELDS
from channels_app.sync import mark_channel_dirty, wake_pushers


@transaction.atomic
def create_channel(*, data: dict, locations: list[dict]) -> Channel:
    channel = Channel.objects.create(**data)
    _set_locations(channel, locations)
    return channel


@transaction.atomic
def update_channel(*, channel: Channel, data: dict, locations: list[dict] | None) -> Channel:
    rules_changed = False
    previous_target = channel.allocation_target
    for field, value in data.items():
        if field in RULE_FIELDS and getattr(channel, field) != value:
            rules_changed = True
        if field == "webhook_secret" and value and value != channel.webhook_secret:
            rotate_webhook_secret(channel=channel, new_secret=value, save=False)
            continue
        setattr(channel, field, value)
    channel.save()
    if locations is not None:
        _set_locations(channel, locations)
        rules_changed = True
    if "allocation_target" in data and channel.allocation_target != previous_target:
        # Before anything else here locks listings: it takes stock rows first, as every stock write does.
        allocation.target_changed(channel, previous_target)
    if rules_changed:
        # What each listing should show may have moved: re-publish everything (level-triggered).
        mark_channel_dirty(channel)
    return channel


def rotate_webhook_secret(*, channel: Channel, new_secret: str, overlap_hours: int = 24, save: bool = True) -> None:
    """The old secret keeps verifying for ``overlap_hours`` while the platform switches over."""
    if channel.webhook_secret:
        channel.previous_webhook_secret = channel.webhook_secret
        channel.previous_secret_expires_at = timezone.now() + timedelta(hours=overlap_hours)
    channel.webhook_secret = new_secret
    if save:
        channel.save(update_fields=["webhook_secret", "previous_webhook_secret", "previous_secret_expires_at",
                                    "updated_at"])


def _set_locations(channel: Channel, locations: list[dict]) -> None:
    ChannelLocation.objects.filter(channel=channel).delete()
    ChannelLocation.objects.bulk_create(ChannelLocation(channel=channel, **item) for item in locations)


def set_paused(*, channel: Channel, paused: bool) -> None:
    Channel.objects.filter(pk=channel.pk).update(paused=paused)
    if not paused:
        mark_channel_dirty(channel)


@transaction.atomic
def upsert_listing(*, channel: Channel, sku, **external) -> Listing:
    listing, created = Listing.objects.update_or_create(channel=channel, sku=sku, defaults=external)
    Listing.objects.filter(pk=listing.pk).update(status="pending")
    if created and channel.allocation_target is not None:
        allocation.top_up(channel, [listing.sku_id])
    transaction.on_commit(lambda: wake_pushers([channel.pk]))
    return listing


def delete_listings(listings) -> int:
    """Delete these listings (a queryset). A ring-fenced channel's listing held its units back from every other
    channel: deleted, those units are the pool's again, and the SKUs' other listings are marked out of date in the
    same transaction (they went on showing less until the SKU's next stock write)."""
    with transaction.atomic():
        rows = list(listings.values_list("pk", "channel_id", "sku_id"))
        by_channel: dict[int, set[int]] = {}
        for _, channel_id, sku_id in rows:
            by_channel.setdefault(channel_id, set()).add(sku_id)
        for channel in Channel.objects.filter(pk__in=by_channel):
            allocation.listings_removed(channel, by_channel[channel.pk])
        Listing.objects.filter(pk__in=[pk for pk, _, _ in rows]).delete()
        return len(rows)
