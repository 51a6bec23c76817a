from __future__ import annotations

import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command
from django.urls import reverse

from tax_app.models import CustomerExemption, Nexus, ProviderConfig, RateAlert, RateTable
from tests.tax.conftest import WA_2025_01

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["ratetable", "rateentry", "jurisdiction", "ratealert", "taxcode", "taxcoderule", "producttaxcode",
          "shippingrule", "nexus", "customerexemption", "providerconfig"]


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-1")
    client.force_login(user)
    return client


def test_admin_lists_render_and_history_is_read_only(staff, us_rates):
    Nexus.objects.create(country="EU", since=date(2025, 1, 1))
    CustomerExemption.objects.create(customer_id="C1", country="US", valid_from=date(2025, 1, 1))
    for model in MODELS:
        assert staff.get(reverse(f"admin:tax_app_{model}_changelist")).status_code == 200, model
    table = RateTable.objects.filter(scope="US-WA").first()
    assert staff.get(reverse("admin:tax_app_ratetable_change", args=[table.pk])).status_code == 200
    assert staff.get(reverse("admin:tax_app_ratetable_add")).status_code == 403
    assert staff.post(reverse("admin:tax_app_ratetable_delete", args=[table.pk]), {"post": "yes"}).status_code == 403
    assert RateTable.objects.filter(pk=table.pk).exists()
    zip_history = staff.get(reverse("admin:tax_app_rateentry_changelist") + "?q=98101")
    assert b"98101" in zip_history.content


def test_provider_key_is_never_rendered(staff):
    config = ProviderConfig.objects.create(name="tj", kind="taxjar", base_url="https://api.example.com",
                                           api_key="sk-live-secret-123")
    page = staff.get(reverse("admin:tax_app_providerconfig_change", args=[config.pk]))
    assert page.status_code == 200 and b"sk-live-secret-123" not in page.content
    form = {"name": "tj", "kind": "taxjar", "base_url": "https://api.example.com", "api_key": "", "api_key_env": "",
            "account_id": "", "company_code": "DEFAULT", "is_active": "on", "priority": "100", "timeout_ms": "1500",
            "attempts": "2", "breaker_threshold": "5", "breaker_cooldown_seconds": "30"}
    assert staff.post(reverse("admin:tax_app_providerconfig_change", args=[config.pk]), form).status_code == 302
    config.refresh_from_db()
    assert config.api_key == "sk-live-secret-123"  # an empty field keeps the stored key


def test_alerts_can_be_acknowledged(staff, db):
    from tax_app import services
    from tests.tax.conftest import NOW
    from tests.tax.test_rate_tables import WA_2025_04

    services.import_file(content=WA_2025_01, name="TAXRATES_ZIP5_WA202501.csv", now=NOW)
    services.import_file(content=WA_2025_04, name="TAXRATES_ZIP5_WA202504.csv", now=NOW)
    alert = RateAlert.objects.get()
    staff.post(reverse("admin:tax_app_ratealert_changelist"),
               {"action": "acknowledge", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.acknowledged


def test_tax_import_command(db, tmp_path, capsys):
    path = tmp_path / "TAXRATES_ZIP5_WA202501.csv"
    path.write_text(WA_2025_01)
    call_command("tax_import", str(path))
    out = capsys.readouterr().out
    assert "US-WA: 3 rows from 2025-01-01" in out
    assert "Imported 1 source(s): 1 table(s), 3 rows in" in out


def test_tax_import_command_refuses_missing_files_and_nothing_to_do(db, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("tax_import", str(tmp_path / "nope.csv"))
    with pytest.raises(CommandError, match="Nothing to import"):
        call_command("tax_import")


def test_tax_sandbox_command_serves_http():
    with socket_port() as port:
        process = subprocess.Popen([sys.executable, "manage.py", "tax_sandbox", "--port", str(port)], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            for _ in range(100):
                try:
                    response = requests.get(f"http://127.0.0.1:{port}/_sandbox/", timeout=0.5)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            else:
                pytest.fail("tax_sandbox did not start")
            assert response.json()["mode"] == "ok"
            changed = requests.post(f"http://127.0.0.1:{port}/_sandbox/", json={"latency_ms": 5}, timeout=2).json()
            assert changed["latency_ms"] == 5
        finally:
            process.terminate()
            process.wait(timeout=10)


class socket_port:  # noqa: N801 - used as a context manager
    """A free TCP port (released just before the child binds it)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        return None
