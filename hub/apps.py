from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "hub"
    verbose_name = "Operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hub.events import on_stock_changed
        from inventory_app.stock import on_stock_changed as register

        register(on_stock_changed)
