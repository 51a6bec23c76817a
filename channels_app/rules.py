"""What each channel is sent: the channel's rules applied to the one availability computation.

Order of the rules, each on the result of the one before:
pool (the locations that feed the channel, all active ones if none are set) → backorder/preorder
allowance if the channel publishes it → minus the safety buffer → the channel's percentage share,
rounded down → halved in conservative mode → capped at the maximum → 0 if below the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable

from channels_app.models import Channel, ChannelLocation, Listing
from inventory_app.availability import SkuAvailability, availability_for_skus


def feeding_location_ids(channel: Channel) -> list[int] | None:
    ids = list(ChannelLocation.objects.filter(channel=channel, feeds_channel=True).values_list("location_id", flat=True))
    return ids or None


def apply_rules(channel: Channel, availability: SkuAvailability) -> int:
    quantity = availability.sellable if channel.include_backorders else availability.available
    quantity -= channel.safety_buffer
    quantity = quantity * channel.share_percent // 100 if quantity > 0 else quantity
    if channel.conservative and quantity > 0:
        quantity //= 2
    if channel.max_quantity is not None:
        quantity = min(quantity, channel.max_quantity)
    if quantity < max(channel.zero_below, 1):
        quantity = 0
    return quantity


def desired_quantities(channel: Channel, listings: Iterable[Listing]) -> dict[int, int]:
    """Listing id -> the quantity this channel should show now."""
    listings = list(listings)
    if not listings:
        return {}
    skus = {listing.sku_id: listing.sku for listing in listings}
    availability = availability_for_skus(skus.values(), location_ids=feeding_location_ids(channel))
    return {listing.id: apply_rules(channel, availability[listing.sku_id]) for listing in listings}
