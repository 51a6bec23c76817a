"""Reconciliation: read what a channel shows, compare with what the hub wants published, heal drift.

Drift is healed through the normal push path (the listing is marked out of date, so the next
push sends the hub's number, compared against what the channel holds now). A listing whose
channel number differs from what we last pushed was edited on the channel, and is shown as such.
Listings with a push already pending are reported as pending, not as drift.

variance % = drifted listings / listings compared x 100; unit variance = sum of |channel - hub|.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from channels_app.adapters import adapter_for
from channels_app.models import Channel, Listing
from channels_app.rules import desired_quantities
from channels_app.sync import lock_listings_in_order, wake_pushers
from hub.models import JobRun
from hub.runs import record_run

KEYS = {"inventory_item_id": "external_inventory_item_id", "variant_id": "external_variant_id",
        "product_id": "external_product_id"}


def _index(listings: list[Listing]) -> dict[tuple[str, str], Listing]:
    index: dict[tuple[str, str], Listing] = {}
    for listing in listings:
        for ref, field in KEYS.items():
            value = getattr(listing, field)
            if value:
                index.setdefault((ref, value), listing)
        index.setdefault(("sku", listing.external_sku or listing.sku.code), listing)
    return index


def _match(index: dict[tuple[str, str], Listing], ref: dict[str, str]) -> Listing | None:
    for key in ("inventory_item_id", "variant_id", "product_id", "sku"):
        if key == "product_id" and ref.get("variant_id"):
            # A variation is itself or nothing: by its parent's id it matched a listed sibling, whose number the
            # unlisted one's was then taken for.
            continue
        value = ref.get(key)
        if value and (key, str(value)) in index:
            return index[(key, str(value))]
    return None


def reconcile_channel(channel: Channel, *, heal: bool = True, progress: Callable[[int], None] | None = None) -> JobRun:
    adapter = adapter_for(channel)
    with record_run("reconcile", channel=channel) as run:
        listings = list(Listing.objects.filter(channel=channel).select_related("sku"))
        index = _index(listings)
        desired = desired_quantities(channel, listings)
        seen: set[int] = set()
        read = matched = pending = 0
        unmatched: list[dict] = []
        drifted: list[tuple[Listing, int, int]] = []
        for level in adapter.read_stock():
            read += 1
            if progress:
                progress(read)
            listing = _match(index, level.ref)
            if listing is None:
                unmatched.append(level.ref)
                continue
            seen.add(listing.id)
            if listing.desired_version > listing.pushed_version or (
                    listing.recheck_after is not None and level.quantity == listing.pushed_quantity):
                # Out of date, or showing the number we sent on purpose below the hub's (the sell-out guard's, a
                # conflict's hedge) with its recheck to come: what the hub wants of it moves with time, not versions.
                pending += 1
            elif level.quantity == desired[listing.id]:
                matched += 1
            else:
                drifted.append((listing, level.quantity, desired[listing.id]))
        compared = matched + len(drifted)
        differences = [{"sku": listing.sku.code, "channel_shows": shows, "hub_wants": wants,
                        "difference": shows - wants, "edited_on_channel": listing.pushed_quantity != shows}
                       for listing, shows, wants in drifted]
        if heal and drifted:
            _heal(channel, drifted)
        run.count_in = read
        run.count_out = len(drifted) if heal else 0
        run.count_rejected = len(unmatched)
        run.variance_percent = (Decimal(len(drifted) * 100) / compared).quantize(Decimal("0.001")) if compared else Decimal(0)
        run.details = {"read": read, "compared": compared, "matched": matched, "drifted": len(drifted),
                       "pending_push": pending, "missing_on_channel": len(listings) - len(seen),
                       "unmatched_on_channel": unmatched[:100], "unit_variance": sum(abs(d["difference"]) for d in differences),
                       "differences": differences[:500], "healed": heal}
        run.ok = True
    return run


def _heal(channel: Channel, drifted: list[tuple[Listing, int, int]]) -> None:
    now = timezone.now()
    with transaction.atomic():
        # Locked in id order first: healed one by one in the channel's order, they could deadlock with a drain.
        lock_listings_in_order(Listing.objects.filter(pk__in=[listing.pk for listing, _, _ in drifted]))
        for listing, shows, _ in drifted:
            edited = listing.pushed_quantity != shows
            Listing.objects.filter(pk=listing.pk).update(
                desired_version=F("desired_version") + 1, remote_quantity=shows, remote_seen_at=now, remote_unsure=False,
                dirty_since=now, status="pending",
                edited_on_channel_at=now if edited else listing.edited_on_channel_at)
        transaction.on_commit(lambda: wake_pushers([channel.pk]))
