"""Run the imitation TaxJar/Avalara server: ``python manage.py tax_sandbox --port 8765``."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from tax_app.sandbox import SandboxServer


class Command(BaseCommand):
    help = "Serve the TaxJar/Avalara sandbox; knobs at /_sandbox/."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)

    def handle(self, *args, host: str, port: int, **options):
        server = SandboxServer(host=host, port=port)
        self.stdout.write(f"tax sandbox on {server.url} (control: {server.url}/_sandbox/)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.httpd.server_close()
