from django.apps import AppConfig


class PickingConfig(AppConfig):
    name = "picking_app"
    verbose_name = "Picking"
    default_auto_field = "django.db.models.BigAutoField"
