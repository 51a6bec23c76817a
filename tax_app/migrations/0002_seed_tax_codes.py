from django.db import migrations

# TaxJar's product tax codes, with Avalara's equivalents; rules per jurisdiction are data, added in the admin.
CODES = [
    ("00000", "General merchandise", "P0000000", True, "standard"),
    ("20010", "Clothing", "PC040100", True, "standard"),
    ("40030", "Food and groceries", "PF050100", True, "reduced_low"),
    ("81100", "Books", "PB100000", True, "reduced_low"),
    ("31000", "Digital goods", "D0000000", True, "standard"),
    ("99999", "Other exempt", "NT", False, "exempt"),
]


def seed(apps, schema_editor):
    TaxCode = apps.get_model("tax_app", "TaxCode")
    for code, name, avalara, taxable, vat in CODES:
        TaxCode.objects.update_or_create(code=code, defaults={
            "name": name, "avalara_code": avalara, "taxable_by_default": taxable, "vat_category": vat})


class Migration(migrations.Migration):
    dependencies = [("tax_app", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
