"""Parsers for published rate layouts. They only read and validate; ``services`` stores what they return."""

from __future__ import annotations

from tax_app.importers.common import ImportFailed, ParsedTable, detect_and_parse

__all__ = ["ImportFailed", "ParsedTable", "detect_and_parse"]
