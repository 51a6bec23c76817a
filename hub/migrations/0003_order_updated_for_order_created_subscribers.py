"""Subscriptions to order.created also get order.updated, the event a repeated order's new lines now are.

Until now those lines came as a second order.created; a subscription that named only order.created would otherwise
stop hearing of them."""

from django.db import migrations


def add_order_updated(apps, schema_editor):
    Subscription = apps.get_model("hub", "Subscription")
    for subscription in Subscription.objects.all():
        types = subscription.event_types
        if isinstance(types, list) and "order.created" in types and "order.updated" not in types:
            subscription.event_types = [*types, "order.updated"]
            subscription.save(update_fields=["event_types"])


class Migration(migrations.Migration):
    dependencies = [("hub", "0002_subscriptions")]

    operations = [migrations.RunPython(add_order_updated, migrations.RunPython.noop)]
