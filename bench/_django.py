"""Shared start-up for bench scripts: Django on the benchmark database, migrated."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/tally_bench")


def setup(migrate: bool = True, fresh: bool = False) -> None:
    """``fresh``: drop and recreate the bench database first. Figures taken on a database grown by earlier
    runs drift (a third run of bench/contention.py on the same database measured 662 reserves/s against
    903 on a new one), so a benchmark that should be reproducible starts from an empty one."""
    import django
    import psycopg

    url = os.environ["DATABASE_URL"]
    if url.startswith("postgres"):
        base, _, name = url.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            if fresh:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_result(name: str, text: str) -> Path:
    out = ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out
