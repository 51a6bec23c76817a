"""``manage.py reconcile --channel <slug>``: compare a channel with the hub now, with a progress bar."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from channels_app.models import Channel
from channels_app.reconcile import reconcile_channel


class Command(BaseCommand):
    help = "Reconcile one channel (or all) now: read its stock, report drift, and heal it through the push path."

    def add_arguments(self, parser):
        parser.add_argument("--channel", help="Channel slug; all enabled channels if omitted.")
        parser.add_argument("--report-only", action="store_true", help="Report drift without healing it.")

    def handle(self, *args, channel=None, report_only=False, **options):
        channels = Channel.objects.filter(enabled=True)
        if channel:
            channels = Channel.objects.filter(slug=channel)
            if not channels.exists():
                raise CommandError(f"No channel {channel!r}. Known: {', '.join(Channel.objects.values_list('slug', flat=True))}")
        for ch in channels:
            total = ch.listings.count()
            with tqdm(total=total, desc=f"{ch.slug}", unit="listing", disable=not self.stdout.isatty()) as bar:
                run = reconcile_channel(ch, heal=not report_only, progress=lambda n, bar=bar: bar.update(1))
            d = run.details
            self.stdout.write(self.style.SUCCESS(
                f"{ch.slug}: read {d['read']}, matched {d['matched']}, drifted {d['drifted']} "
                f"({run.variance_percent}%), pending {d['pending_push']}, missing {d['missing_on_channel']}, "
                f"unit variance {d['unit_variance']}, {'healing' if not report_only else 'report only'} (run {run.pk})"))
