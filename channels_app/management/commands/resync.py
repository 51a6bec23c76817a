"""``manage.py resync --channel <slug>``: push every listing of a channel again, with a progress bar."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db.models import F
from tqdm import tqdm

from channels_app import outbound
from channels_app.models import Channel, ListingStatus
from channels_app.sync import mark_channel_dirty


class Command(BaseCommand):
    help = ("Force a full resync of one channel (or all enabled ones): every listing is pushed again with the hub's "
            "number. By default the push workers do the work and this waits for them; --inline pushes from here.")

    def add_arguments(self, parser):
        parser.add_argument("--channel", help="Channel slug; all enabled channels if omitted.")
        parser.add_argument("--inline", action="store_true", help="Push from this process (no Celery worker needed).")
        parser.add_argument("--no-wait", action="store_true", help="Mark the listings and return.")
        parser.add_argument("--timeout", type=float, default=600, help="Seconds to wait for the backlog (default 600).")

    def handle(self, *args, channel=None, inline=False, no_wait=False, timeout=600.0, **options):
        channels = Channel.objects.filter(enabled=True).order_by("slug")
        if channel:
            channels = Channel.objects.filter(slug=channel)
            if not channels.exists():
                known = ", ".join(Channel.objects.order_by("slug").values_list("slug", flat=True)) or "none"
                raise CommandError(f"No channel {channel!r}. Known: {known}")
        incomplete = []
        for ch in channels:
            if ch.paused and not no_wait:
                self.stderr.write(f"{ch.slug} is paused: its listings are marked and go out when it is resumed.")
            started = time.monotonic()
            total = mark_channel_dirty(ch)
            if no_wait or ch.paused or total == 0:
                self.stdout.write(f"{ch.slug}: {total} listing(s) marked for push.")
                continue
            left, failed = self._follow(ch, total, inline=inline, timeout=timeout)
            pushed = total - left - failed
            style = self.style.SUCCESS if not left and not failed else self.style.WARNING
            self.stdout.write(style(f"{ch.slug}: {pushed} of {total} listing(s) pushed, {failed} failed, {left} still "
                                    f"waiting, in {time.monotonic() - started:.1f}s."))
            if left or failed:
                incomplete.append(ch.slug)
        if incomplete:
            raise CommandError(f"Not complete on {', '.join(incomplete)}: see the channel's failed listings in the "
                               "admin (sync status), or run again with --inline if no push worker is running.")

    def _follow(self, ch: Channel, total: int, *, inline: bool, timeout: float) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        last_left, last_progress = total, time.monotonic()
        with tqdm(total=total, desc=ch.slug, unit="listing", disable=not self.stdout.isatty()) as bar:
            while True:
                if inline:
                    outbound.push_channel(ch.pk)
                left, failed = self._backlog(ch)
                bar.update((total - left) - bar.n)
                bar.set_postfix(failed=failed)
                if left == 0 or time.monotonic() > deadline:
                    return left, failed
                if left < last_left:
                    last_left, last_progress = left, time.monotonic()
                elif not inline and time.monotonic() - last_progress > 30:
                    self.stderr.write(f"{ch.slug}: no progress for 30 s; is a push worker running (queue 'push')?")
                    last_progress = time.monotonic()
                time.sleep(0.05 if inline else 0.25)

    @staticmethod
    def _backlog(ch: Channel) -> tuple[int, int]:
        behind = ch.listings.filter(desired_version__gt=F("pushed_version"))
        failed = behind.filter(status=ListingStatus.FAILED).count()
        return behind.count() - failed, failed
