from django.apps import AppConfig


class TaxConfig(AppConfig):
    name = "tax_app"
    verbose_name = "Tax"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tax_app import signals

        signals.connect()
