# Listings found by the ids channels name them by (inbound.find_listing), and two foreign-key indexes dropped that
# the unique (channel, sku) constraint and listing_sku cover.
#
# Written out rather than generated: Django's AlterField for db_index drops and re-creates the foreign keys
# (re-checking every row), and its AddIndex locks the table against writes while it builds. Every sale and every
# push writes listings, so on PostgreSQL the indexes are built CONCURRENTLY (hence atomic = False) and only the
# indexes are dropped; the model state changes as Django would have it.

import django.db.models.deletion
from django.db import migrations, models

TABLE = "channels_app_listing"
# Named as 0001_initial created them (Django's deterministic names for the foreign keys' indexes).
DROPPED = ["channels_app_listing_channel_id_fdfea30e", "channels_app_listing_sku_id_3504d60d"]
ADDED = {
    "listing_by_inventory_item": "channel_id, external_inventory_item_id",
    "listing_by_variant": "channel_id, external_variant_id",
    "listing_by_product": "channel_id, external_product_id",
    "listing_by_channel_sku": "channel_id, external_sku",
}


def forwards(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for name, columns in ADDED.items():
        schema_editor.execute(f"CREATE INDEX{concurrently} IF NOT EXISTS {name} ON {TABLE} ({columns})")
    for name in DROPPED:
        schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {name}")


def backwards(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for name, column in zip(DROPPED, ["channel_id", "sku_id"], strict=True):
        schema_editor.execute(f"CREATE INDEX{concurrently} IF NOT EXISTS {name} ON {TABLE} ({column})")
    for name in ADDED:
        schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("channels_app", "0008_listing_remote_unsure"),
        ("inventory_app", "0002_alter_orderline_status"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="listing", name="channel",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="listings", to="channels_app.channel")),
                migrations.AlterField(
                    model_name="listing", name="sku",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT,
                                            related_name="listings", to="inventory_app.sku")),
                *[migrations.AddIndex(model_name="listing", index=models.Index(
                    fields=["channel", columns.split(", ")[1]], name=name)) for name, columns in ADDED.items()],
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
