from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from channels_app.allocation import settle
        from channels_app.sync import mark_listings_dirty
        from inventory_app.stock import on_stock_changed

        # Stock writes mark affected listings out of date, and keep ring fences, inside the same transaction.
        on_stock_changed(mark_listings_dirty)
        # After it: its listing locks (earlier in the same batch) are what make two writes of a SKU settle in turn.
        on_stock_changed(settle)
