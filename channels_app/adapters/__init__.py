"""One adapter per channel kind, behind ``adapter_for``."""

from __future__ import annotations

from channels_app.adapters.amazon import AmazonAdapter
from channels_app.adapters.base import ChannelAdapter
from channels_app.adapters.bigcommerce import BigCommerceAdapter
from channels_app.adapters.shopify import ShopifyAdapter
from channels_app.adapters.standard import StandardAdapter
from channels_app.adapters.woocommerce import WooCommerceAdapter
from channels_app.models import Channel, ChannelKind

ADAPTERS: dict[str, type[ChannelAdapter]] = {
    ChannelKind.SHOPIFY: ShopifyAdapter,
    ChannelKind.WOOCOMMERCE: WooCommerceAdapter,
    ChannelKind.BIGCOMMERCE: BigCommerceAdapter,
    ChannelKind.AMAZON: AmazonAdapter,
    ChannelKind.STANDARD: StandardAdapter,
}


def adapter_for(channel: Channel) -> ChannelAdapter:
    return ADAPTERS[channel.kind](channel)
