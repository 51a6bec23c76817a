"""What a server process does once, after it has loaded the app and before its first request or task."""

from __future__ import annotations

import gc


def warm_up(*, web: bool) -> None:
    """Load what Django would load on the first request, then take the heap out of the collector's sight.

    The app's modules, settings, URL patterns and model metadata live as long as the process, yet every
    full (generation 2) collection walks all of them: about 130,000 objects in a gunicorn worker, measured
    at 64-114 ms a pass while serving 300 webhooks/s (`bench/ingest.py --timeline`), which was the ack's
    p99. ``gc.freeze()`` moves what exists now to a generation the collector never scans; what requests
    and tasks allocate afterwards is still collected as before."""
    if web:
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 - imports every urls module and the views they name
    gc.collect()
    gc.freeze()
