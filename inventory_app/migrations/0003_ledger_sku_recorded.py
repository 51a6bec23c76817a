"""The ledger's index by SKU and time (a SKU's recent sales, for the channels' sell-out guard).

Built CONCURRENTLY on PostgreSQL: a plain CREATE INDEX on the ledger, append-only and written by every sale, would
hold every stock write until it is built. Elsewhere (SQLite, the one-box demo) a plain one."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("inventory_app", "0002_alter_orderline_status"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="stockledgerentry",
            index=models.Index(fields=["sku", "recorded_at"], name="ledger_sku_recorded"),
        ),
    ]
