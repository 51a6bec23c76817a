"""Importers, effective dating, activation, vanished-jurisdiction alerts and the scheduled refresh."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from tax_app import engine, selectors, services
from tax_app.importers import ImportFailed, detect_and_parse
from tax_app.models import Jurisdiction, Nexus, RateAlert, RateEntry, RateTable, TableStatus
from tax_app.providers.base import NoRates
from tax_app.tasks import tax_refresh_rates
from tests.tax.conftest import AVALARA_HEADER, NOW, WA_2025_01, control, req

D = Decimal
SEATTLE = {"state": "WA", "zip_code": "98101"}
# April 2025: Seattle's city rate goes up by 0.1%, Auburn is dropped from the file.
WA_2025_04 = "\n".join([
    AVALARA_HEADER,
    "WA,98101,SEATTLE,0.065000,0.103500,0.000000,0.038500,0.000000,1",
    "WA,98501,OLYMPIA,0.065000,0.098000,0.000000,0.033000,0.000000,1",
]) + "\n"
WA_DOR = "\n".join([
    "ZIP,PLUS4_LOW,PLUS4_HIGH,CODE,STATE,LOCAL,TOT_RATE,EFF_START,EFF_END",
    "98101,0001,4999,1726,0.065,0.0385,0.1035,20251001,20251231",
    "98101,5000,9999,1799,0.065,0.0200,0.0850,20251001,20251231",
    "98501,,,3406,0.065,0.0330,0.0980,20251001,20251231",
    "98101,0001,9999,1726,0.065,0.0395,0.1045,20260101,20260331",
    "98501,,,3406,0.065,0.0330,0.0980,20260101,20260331",
]) + "\n"


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 0, 0, tzinfo=UTC)


@pytest.fixture
def wa(db):
    Nexus.objects.create(country="US", state="WA", since=date(2024, 1, 1))
    services.import_file(content=WA_2025_01, name="TAXRATES_ZIP5_WA202501.csv", now=at(date(2025, 1, 15)))


def seattle_tax(on: date) -> Decimal:
    return engine.calculate(request=req(("1", "100.00"), **SEATTLE), on_date=on, now=NOW).total_tax


def test_future_dated_table_takes_effect_exactly_on_its_date(wa):
    services.import_file(content=WA_2025_04, name="TAXRATES_ZIP5_WA202504.csv", now=at(date(2025, 3, 10)))
    assert seattle_tax(date(2025, 3, 31)) == D("10.25")
    assert seattle_tax(date(2025, 4, 1)) == D("10.35")
    assert seattle_tax(date(2026, 12, 31)) == D("10.35")
    with pytest.raises(NoRates, match="No rate in force"):
        engine.calculate(request=req(("1", "1"), **SEATTLE), on_date=date(2024, 12, 31), now=NOW)


def test_statuses_follow_the_clock_and_old_tables_stay(wa):
    services.import_file(content=WA_2025_04, name="TAXRATES_ZIP5_WA202504.csv", now=at(date(2025, 3, 10)))
    jan, apr = RateTable.objects.filter(scope="US-WA").order_by("effective_from")
    assert (jan.status, apr.status, jan.effective_to) == ("active", "scheduled", date(2025, 4, 1))

    assert services.activate_due(on_date=date(2025, 3, 31), now=at(date(2025, 3, 31))) == []
    activations = services.activate_due(on_date=date(2025, 4, 1), now=at(date(2025, 4, 1)))
    jan.refresh_from_db()
    apr.refresh_from_db()
    assert (jan.status, apr.status) == (TableStatus.SUPERSEDED, TableStatus.ACTIVE)
    assert RateEntry.objects.filter(table=jan).count() == 3  # history kept for audit
    assert [a.vanished for a in activations] == [["US-WA:AUBURN:city"]]
    alert = RateAlert.objects.get()
    assert (alert.table, alert.previous_table, alert.jurisdiction_code) == (apr, jan, "US-WA:AUBURN:city")
    assert Jurisdiction.objects.get(code="US-WA:AUBURN:city").vanished_on == date(2025, 4, 1)
    # Running it again changes nothing and alerts nothing twice.
    assert services.activate_due(on_date=date(2025, 4, 1), now=at(date(2025, 4, 1))) == []
    assert RateAlert.objects.count() == 1


def test_vanished_jurisdiction_logs_a_warning(wa, caplog):
    services.import_file(content=WA_2025_04, name="TAXRATES_ZIP5_WA202504.csv", now=at(date(2025, 4, 2)))
    assert "vanished" in caplog.text and "US-WA:AUBURN:city" in caplog.text


def test_out_of_order_imports_chain_correctly(db):
    services.import_file(content=WA_2025_04, name="TAXRATES_ZIP5_WA202504.csv", now=NOW)
    services.import_file(content=WA_2025_01, name="TAXRATES_ZIP5_WA202501.csv", now=NOW)
    windows = list(RateTable.objects.filter(scope="US-WA").order_by("effective_from")
                   .values_list("effective_from", "effective_to"))
    assert windows == [(date(2025, 1, 1), date(2025, 4, 1)), (date(2025, 4, 1), None)]


def test_reimport_is_a_no_op_and_new_content_replaces(wa):
    services.import_file(content=WA_2025_01, name="TAXRATES_ZIP5_WA202501.csv", now=NOW)
    assert RateTable.objects.filter(scope="US-WA").count() == 1
    corrected = WA_2025_01.replace("0.037500,0.000000,1", "0.037600,0.000000,1").replace("0.102500", "0.102600")
    services.import_file(content=corrected, name="TAXRATES_ZIP5_WA202501.csv", now=NOW)
    statuses = sorted(RateTable.objects.filter(scope="US-WA").values_list("status", flat=True))
    assert statuses == ["active", "replaced"]
    assert seattle_tax(date(2025, 2, 1)) == D("10.26")


def test_avalara_zips_keep_leading_zeros():
    content = "\n".join([
        AVALARA_HEADER,
        "MA,01001,AGAWAM,0.062500,0.062500,0.000000,0.000000,0.000000,1",
        "NY,501,HOLTSVILLE,0.040000,0.086250,0.042500,0.000000,0.003750,1",  # a spreadsheet ate the zeros
    ])
    tables = {t.scope: t for t in detect_and_parse(content, name="mixed.csv", effective_from=date(2025, 1, 1))}
    assert tables["US-MA"].rows[0]["zip"] == "01001"
    assert tables["US-NY"].rows[0]["zip"] == "00501"
    assert tables["US-NY"].rows[0]["special_rate"] == D("0.003750")
    assert set(tables["US-NY"].jurisdictions) == {"US-NY", "US-NY:HOLTSVILLE:county", "US-NY:HOLTSVILLE:special"}


@pytest.mark.parametrize(("row", "message"), [
    ("WA,98101,SEATTLE,0.065,0.2,0,0.0375,0,1", "add up"),
    ("WA,98101,SEATTLE,abc,0.1025,0,0.0375,0,1", "not a rate"),
    ("WA,9810A,SEATTLE,0.065,0.1025,0,0.0375,0,1", "bad ZIP"),
    ("WA,98101,SEATTLE,1.5,1.5,0,0,0,1", "outside"),
])
def test_bad_rows_reject_the_whole_file(row, message):
    with pytest.raises(ImportFailed, match=message):
        detect_and_parse(f"{AVALARA_HEADER}\n{row}\n", name="TAXRATES_ZIP5_WA202501.csv")


def test_unknown_layout_is_refused():
    with pytest.raises(ImportFailed, match="unrecognised header"):
        detect_and_parse("zip,rate\n98101,0.1\n", name="x.csv")


def test_wa_dor_quarters_zip4_ranges_and_expiry(db):
    Nexus.objects.create(country="US", state="WA", since=date(2024, 1, 1))
    tables = services.import_file(content=WA_DOR, name="ZIP4Q42025.csv", now=at(date(2025, 9, 20)))
    assert [(t.effective_from, t.expires_on) for t in tables] == [
        (date(2025, 10, 1), date(2026, 1, 1)), (date(2026, 1, 1), date(2026, 4, 1))]

    def tax(zip_code: str, on: date) -> Decimal:
        return engine.calculate(request=req(("1", "100.00"), state="WA", zip_code=zip_code), on_date=on, now=NOW).total_tax

    assert tax("98101-1000", date(2025, 12, 31)) == D("10.35")
    assert tax("98101-6000", date(2025, 12, 31)) == D("8.50")
    assert tax("98101", date(2025, 12, 31)) == D("8.50")  # no +4: the widest range
    assert tax("98101-6000", date(2026, 1, 1)) == D("10.45")
    assert selectors.table_on(scope="US-WA", on_date=date(2026, 4, 1)) is None  # the file said when it expires
    result = engine.calculate(request=req(("1", "100.00"), state="WA", zip_code="98101-1000"), on_date=date(2025, 10, 1),
                              now=NOW)
    assert [(j.kind, j.name) for j in result.lines[0].jurisdictions] == [("state", "WA"), ("city", "WA location 1726")]


def test_refresh_task_imports_a_directory_and_url(db, tmp_path, monkeypatch, sandbox):
    (tmp_path / "TAXRATES_ZIP5_WA202501.csv").write_text(WA_2025_01)
    (tmp_path / "broken.csv").write_text("nonsense\n")
    control(sandbox, files={"TAXRATES_ZIP5_WA202504.csv": WA_2025_04})
    monkeypatch.setenv("TAX_RATES_DIR", str(tmp_path))
    monkeypatch.setenv("TAX_RATES_URL", f"{sandbox.url}/files/TAXRATES_ZIP5_WA202504.csv")
    monkeypatch.setenv("TAX_IMPORT_EU_VAT", "0")
    report = tax_refresh_rates.apply().get()
    assert report["imported"] == ["TAXRATES_ZIP5_WA202501.csv", "TAXRATES_ZIP5_WA202504.csv"]
    assert len(report["errors"]) == 1 and "broken.csv" in report["errors"][0]
    assert RateTable.objects.get(effective_from=date(2025, 4, 1)).status == TableStatus.ACTIVE
    again = services.refresh_rates(now=NOW)
    assert again.imported == [] and again.skipped == ["TAXRATES_ZIP5_WA202501.csv", "TAXRATES_ZIP5_WA202504.csv"]


def test_refresh_with_eu_vat_is_idempotent(db, monkeypatch):
    monkeypatch.delenv("TAX_RATES_DIR", raising=False)
    monkeypatch.delenv("TAX_RATES_URL", raising=False)
    first = services.refresh_rates(now=NOW, include_eu_vat=True)
    assert len(first.imported) == 1 and first.imported[0].startswith("eu_vat_rates_data")
    assert services.refresh_rates(now=NOW, include_eu_vat=True).imported == []
    assert RateEntry.objects.get(country="FR", category="standard").country_rate == D("0.2")
    assert not RateEntry.objects.filter(country="NO").exists()  # EU members only
