"""A GraphQL Shopify store's catalog goes through REST and keeps REST's own limit (review, 2026-12-08)."""

from __future__ import annotations

import pytest

from channels_app import publishing
from channels_app.adapters import adapter_for
from channels_app.models import Listing
from channels_app.publishing import CatalogItem
from hub.redis import get_redis
from tests.channels.sandboxed import connect
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_graphql_stores_catalog_calls_keep_within_the_rest_limit():
    """Catalog calls (a name: a REST product update each) were paced by the GraphQL bucket (90 at 9 a second), and 45
    went out at once against REST's bucket of 40: Shopify refused 5 (review finding). They now draw on a REST bucket
    of their own, which REST's call-limit header corrects, and none is refused."""
    wh = make_location()
    skus = [make_sku(stock_at={wh: 1}) for _ in range(45)]
    channel, sandbox = connect("shopify", {sku: 1 for sku in skus})
    with sandbox:
        adapter = adapter_for(channel)
        assert adapter.use_graphql and adapter.catalog_limiter.key != adapter.limiter.key
        get_redis().delete(adapter.catalog_limiter.key)
        items = [CatalogItem(listing=x, name=f"New {x.sku.code}")
                 for x in Listing.objects.filter(channel=channel).select_related("sku")]
        ok, failed, errors = publishing._send(adapter, "catalog", items)
        assert (ok, failed, errors) == (45, 0, [])
        assert sandbox.state.snapshot()["rate_limited"] == 0
        assert {row["name"] for row in sandbox.state.snapshot()["inventory"]} == {f"New {sku.code}" for sku in skus}
