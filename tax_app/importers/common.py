"""What every importer returns, and the layout detection used for a directory of files."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

MAX_REPORTED_ERRORS = 20


class ImportFailed(Exception):
    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.errors = errors or []

    def __str__(self) -> str:
        extra = "; ".join(self.errors[:5])
        return f"{self.args[0]}{': ' + extra if extra else ''}"


@dataclass
class ParsedTable:
    source: str
    scope: str
    name: str
    checksum: str
    effective_from: date
    expires_on: date | None = None  # exclusive
    rows: list[dict] = field(default_factory=list)
    # breakdown code -> (kind, display name)
    jurisdictions: dict[str, tuple[str, str]] = field(default_factory=dict)


def checksum(content: bytes | str) -> str:
    """Of the content as delivered (bytes), so a re-delivered file is recognised before parsing."""
    return hashlib.sha256(content.encode() if isinstance(content, str) else content).hexdigest()


def decode(content: bytes | str) -> str:
    if isinstance(content, str):
        return content
    return content.decode("utf-8-sig")


def reader(text: str) -> csv.DictReader:
    return csv.DictReader(io.StringIO(text))


def parse_rate(raw: str, *, where: str) -> Decimal:
    try:
        value = Decimal((raw or "0").strip())
    except InvalidOperation:
        raise ValueError(f"{where}: {raw!r} is not a rate") from None
    if not value.is_finite() or value < 0 or value >= 1:
        raise ValueError(f"{where}: rate {raw!r} is outside 0..1")
    return value


def parse_date(raw: str, *, where: str) -> date:
    raw = (raw or "").strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{where}: {raw!r} is not a date (YYYYMMDD, YYYY-MM-DD or MM/DD/YYYY)")


def day_after(value: date) -> date:
    return value + timedelta(days=1)


_YYYYMM = re.compile(r"(20\d{2})(0[1-9]|1[0-2])(?!\d)")


def effective_from_name(name: str) -> date | None:
    """Avalara names its files TAXRATES_ZIP5_WA202507.csv: rates in force from the first of that month."""
    match = _YYYYMM.search(name.rsplit("/", 1)[-1])
    return date(int(match.group(1)), int(match.group(2)), 1) if match else None


def detect_and_parse(content: bytes | str, *, name: str, effective_from: date | None = None) -> list[ParsedTable]:
    from tax_app.importers import avalara_zip5, wa_dor

    text = decode(content)
    header = [h.strip() for h in text.split("\n", 1)[0].strip().split(",")]
    if header == avalara_zip5.HEADER:
        return avalara_zip5.parse(content, name=name, effective_from=effective_from)
    if header == wa_dor.HEADER:
        return wa_dor.parse(content, name=name)
    raise ImportFailed(f"{name}: unrecognised header {','.join(header)[:200]!r}")
