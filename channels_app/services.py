"""Writes to channel configuration (the API and the admin both call these)."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from channels_app import allocation
from channels_app.models import MAPPING_FIELDS, Channel, ChannelLocation, Listing, ListingStatus
from channels_app.rules import RULE_FIELDS
from channels_app.sync import mark_channel_dirty, update_listings_in_order, wake_pushers


@transaction.atomic
def create_channel(*, data: dict, locations: list[dict]) -> Channel:
    channel = Channel.objects.create(**data)
    _set_locations(channel, locations)
    return channel


@transaction.atomic
def update_channel(*, channel: Channel, data: dict, locations: list[dict] | None) -> Channel:
    rules_changed = False
    previous_target, previous_max = channel.allocation_target, channel.max_quantity
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
    if channel.allocation_target != previous_target or (
            channel.allocation_target is not None and channel.max_quantity != previous_max):
        # Before anything else here locks listings: it takes stock rows first, as every stock write does. A new
        # maximum moves what the fence is filled to (its target, capped at the maximum): topped up now, not once
        # the channel has sold what it holds.
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



def upsert_listing(*, channel: Channel, sku, **mapping) -> Listing:
    """List a SKU on a channel, or point its listing at the items named. A listing created is pushed as any new one
    is; one whose mapping changed, through ``remap_listing`` (it was marked pending with no new version: a listing in
    sync showed "waiting to push" for good, and the newly named item got no number until the SKU's next sale)."""
    with transaction.atomic():
        listing, created = Listing.objects.get_or_create(channel=channel, sku=sku, defaults=mapping)
        if created:
            if channel.allocation_target is not None:
                allocation.top_up(channel, [listing.sku_id])
            transaction.on_commit(lambda: wake_pushers([channel.pk]))
        else:
            remap_listing(listing, **{name: value for name, value in mapping.items() if getattr(listing, name) != value})
    listing.refresh_from_db()
    return listing


def remap_listing(listing: Listing, **mapping) -> None:
    """Point a listing at another item (or location) of its channel: only those fields are written, the row locked
    in id order, and the listing is pushed with a fresh retry budget (a wrong id is what failed it, as a rule): the
    item it names now has never been sent our number, and what it holds is unknown. Saved whole from the admin's
    form, a listing wrote back the versions read when the form was loaded: a sale committed meanwhile was undone
    and the channel kept the number from before it (review finding, 2026-12-07)."""
    unknown = set(mapping) - set(MAPPING_FIELDS)
    if unknown:
        raise ValueError(f"not a listing's mapping: {sorted(unknown)}")
    if not mapping:
        return
    with transaction.atomic():
        update_listings_in_order(
            Listing.objects.filter(pk=listing.pk), **mapping, desired_version=F("desired_version") + 1,
            dirty_since=Coalesce(F("dirty_since"), Value(timezone.now())), status=ListingStatus.PENDING, attempts=0,
            next_attempt_at=None, last_error="", remote_quantity=None, remote_seen_at=None, remote_unsure=False,
            # Nor has it been sent ours: the old item's numbers, kept, were sent as the new one's expected number
            # (Shopify's compare-and-set), which it refused, and the difference was taken for sales made there.
            pushed_quantity=None, attempted_quantity=None)
        transaction.on_commit(lambda: wake_pushers([listing.channel_id]))


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
