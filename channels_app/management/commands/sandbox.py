"""``manage.py sandbox``: serve the platform imitation for channels configured in the hub.

    manage.py sandbox --channel demo-shopify          # one channel, on its api_base_url's port
    manage.py sandbox --all                           # every channel whose API is a loopback sandbox
    manage.py sandbox --kind shopify --port 9200      # a bare sandbox (see python -m channels_app.sandbox)

Secrets and catalogue come from the channel's configuration, never from the command line.
"""

from __future__ import annotations

import signal
import threading
from urllib.parse import urlparse

from django.core.management.base import BaseCommand, CommandError

from channels_app.demo import sandbox_catalog
from channels_app.models import Channel
from channels_app.sandbox import start_sandbox


class Command(BaseCommand):
    help = "Run sandbox platform servers for hub channels (or a bare one) until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--channel", action="append", default=[], help="Channel slug (repeatable).")
        parser.add_argument("--all", action="store_true", help="Every channel whose API URL is on loopback.")
        parser.add_argument("--hub", default="http://127.0.0.1:8000", help="Where the sandboxes send webhooks.")
        parser.add_argument("--kind", help="Run a bare sandbox of this kind instead.")
        parser.add_argument("--port", type=int, default=0)

    def handle(self, *args, channel, all, hub, kind, port, **options):
        started = []
        if kind:
            started.append(start_sandbox(kind, port=port, hub_url=hub))
        else:
            channels = list(Channel.objects.filter(slug__in=channel)) if channel else []
            if all:
                channels = [c for c in Channel.objects.all() if urlparse(c.api_base_url).hostname in ("127.0.0.1", "localhost")]
            if not channels:
                raise CommandError("Name --channel <slug>, --all, or --kind.")
            for ch in channels:
                bound = urlparse(ch.api_base_url).port or port
                started.append(start_sandbox(
                    ch.kind, port=bound, hub_url=hub, channel_slug=ch.slug, webhook_secret=ch.webhook_secret,
                    credentials=ch.credentials or None, catalog=sandbox_catalog(ch)))
        for sandbox in started:
            self.stdout.write(f"  sandbox {sandbox.kind:12} {sandbox.url}  (control: {sandbox.url}/_sandbox/state)")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            for sandbox in started:
                sandbox.stop()
