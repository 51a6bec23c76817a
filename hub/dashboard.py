"""The operators' sync dashboard in the admin: one card per channel, refreshed in place every few seconds.

Everything here only reads. Per channel it shows the health badge and its reason (``selectors.sync_status``),
sync lag percentiles over the last 5 minutes and the last hour (and a per-minute chart of the hour, drawn
server-side as inline SVG), the push backlog, failed listings, dead-lettered inbound events, the last
reconciliation's variance, the rate-limit headroom left in the channel's Redis bucket, the last webhook and
push times and the last error, with links to the admin pages where each problem is fixed (inbox replay,
listing replay, a SKU's ledger, a listing's push history) and to Flower.

``/admin/dashboard/`` renders the page; ``/admin/dashboard/data.json`` returns the same numbers as JSON plus the
rendered body, which the page's small inline script swaps in every few seconds. No external JS or CSS.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from django.contrib import admin
from django.db.models import Count
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe

from channels_app.models import Channel, InboundEvent, InboundStatus, Listing, ListingStatus, SyncLagMinute
from channels_app.ratelimit import limiter_for
from channels_app.rollups import last_rolled_up
from channels_app.selectors import lag_minutes, sync_status
from hub.models import JobRun

REFRESH_SECONDS = 4
CHART_MINUTES = 60
SAMPLE_ROWS = 5
DEAD_STATUSES = [InboundStatus.DEAD, InboundStatus.PARKED, InboundStatus.FAILED]
HEALTH_COLOURS = {"green": "#2e7d32", "amber": "#ef6c00", "red": "#c62828", "grey": "#757575"}
SERIES = (("p50", 50, "#2e7d32"), ("p95", 95, "#ef6c00"), ("p99", 99, "#c62828"))


def flower_url() -> str:
    return os.environ.get("FLOWER_URL", "http://127.0.0.1:5555/")


# --- numbers ---------------------------------------------------------------------------------------


_ASK = object()  # ``rolled`` not given: read it


def lag_buckets(channel: Channel, now: datetime, minutes: int = CHART_MINUTES, *, rolled=_ASK) -> list[dict]:
    """Per UTC minute over the last ``minutes`` (oldest first; the last is the minute now is in): count and
    p50/p95/p99 of acknowledged pushes' lag. Minutes rolled up already are read from their rollup (a row per
    minute); the rest, the last minute or two while the roll-up runs, from the push history, summed up by the
    database: an hour of a busy channel's history is hundreds of thousands of rows."""
    this_minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    start = this_minute - timedelta(minutes=minutes - 1)
    by_minute: dict[datetime, tuple] = {}
    if rolled is _ASK:  # the page reads it once for all its channels (``dashboard_data``)
        rolled = last_rolled_up()
    if rolled is not None and rolled >= start:
        for row in SyncLagMinute.objects.filter(channel=channel, minute__gte=start, minute__lte=rolled):
            by_minute[row.minute] = (row.count, row.p50_ms, row.p95_ms, row.p99_ms)
        raw_from = rolled + timedelta(minutes=1)
    else:
        raw_from = start
    for (_, minute), lag in lag_minutes(raw_from, now + timedelta(microseconds=1), channel.pk).items():
        by_minute[minute] = (lag.count, lag.p50_ms, lag.p95_ms, lag.p99_ms)
    buckets = []
    for index in range(minutes):
        count, *percentiles = by_minute.get(start + timedelta(minutes=index), (0, None, None, None))
        buckets.append({"minute": index - minutes + 1, "count": count,
                        **{label: value for (label, _, _), value in zip(SERIES, percentiles, strict=True)}})
    return buckets


def rate_limit_headroom(channel: Channel) -> dict:
    """Tokens left in the channel's shared bucket now (refilled to the Redis clock, as the limiter does)."""
    limiter = limiter_for(channel)
    capacity, rate = float(limiter.capacity), float(limiter.per_second)
    result = {"key": limiter.key, "capacity": capacity, "per_second": round(rate, 3), "tokens": None,
              "blocked_seconds": 0.0, "percent": None, "error": ""}
    try:
        from hub.redis import get_redis

        redis = get_redis()
        tokens, ts, blocked = redis.hmget(limiter.key, "tokens", "ts", "blocked_until")
        seconds, micros = redis.time()
    except Exception as exc:  # noqa: BLE001 - the dashboard must render with Redis down; it says so instead
        result["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return result
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    if blocked is not None and float(blocked) > now_ms:
        result.update(tokens=0.0, blocked_seconds=round((float(blocked) - now_ms) / 1000, 1), percent=0)
        return result
    if tokens is None:
        left = capacity  # bucket unused for an hour (it expires): full
    else:
        elapsed = max(now_ms - float(ts or now_ms), 0)
        left = min(capacity, float(tokens) + elapsed * rate / 1000)
    result.update(tokens=round(left, 1), percent=round(100 * left / capacity) if capacity else None)
    return result


def last_reconcile(channel: Channel) -> dict | None:
    run = JobRun.objects.filter(job="reconcile", channel=channel, finished_at__isnull=False).order_by(
        "-started_at").first()
    if run is None:
        return None
    return {"id": run.id, "at": run.finished_at, "ok": run.ok,
            "variance_percent": float(run.variance_percent) if run.variance_percent is not None else None,
            "compared": run.count_in, "healed": run.count_out, "error": run.error[:200],
            "url": reverse("admin:hub_jobrun_change", args=[run.id])}


def _changelist(model: str, **params) -> str:
    return f"{reverse(f'admin:{model}_changelist')}?{urlencode(params)}"


def ledger_url(sku_id: int) -> str:
    return _changelist("inventory_app_stockledgerentry", sku__id__exact=sku_id)


def push_history_url(listing_id: int) -> str:
    return _changelist("channels_app_pushlog", listing__id__exact=listing_id)


def channel_card(channel: Channel, now: datetime, *, rolled=_ASK) -> dict:
    status = sync_status(channel, now=now)
    failed = [{"id": x.id, "sku": x.sku.code, "error": x.last_error[:200], "attempts": x.attempts,
               "ledger_url": ledger_url(x.sku_id), "history_url": push_history_url(x.id),
               "change_url": reverse("admin:channels_app_listing_change", args=[x.id])}
              for x in Listing.objects.filter(channel=channel, status=ListingStatus.FAILED).select_related("sku")
              .order_by("-updated_at")[:SAMPLE_ROWS]]
    dead = [{"id": e.id, "topic": e.topic, "status": e.status, "error": e.last_error[:200], "received_at": e.received_at,
             "change_url": reverse("admin:channels_app_inboundevent_change", args=[e.id])}
            for e in InboundEvent.objects.filter(channel=channel, status__in=DEAD_STATUSES).order_by("-id")[:SAMPLE_ROWS]]
    buckets = lag_buckets(channel, now, rolled=rolled)
    return {
        **status,
        "id": channel.id, "name": channel.name, "kind": channel.get_kind_display(),
        "colour": HEALTH_COLOURS.get(status["health"], HEALTH_COLOURS["grey"]),
        "rate_limit": rate_limit_headroom(channel),
        "reconcile": last_reconcile(channel),
        "lag_buckets": buckets,
        "chart": lag_chart(buckets),
        "failed_sample": failed,
        "dead_sample": dead,
        "links": {
            "channel": reverse("admin:channels_app_channel_change", args=[channel.id]),
            "inbox": _changelist("channels_app_inboundevent", channel__id__exact=channel.id, attention="yes"),
            "inbox_all": _changelist("channels_app_inboundevent", channel__id__exact=channel.id),
            "failed_listings": _changelist("channels_app_listing", channel__id__exact=channel.id, status__exact="failed"),
            "listings": _changelist("channels_app_listing", channel__id__exact=channel.id),
            "pushes": _changelist("channels_app_pushlog", channel__id__exact=channel.id),
            "runs": _changelist("hub_jobrun", channel__id__exact=channel.id),
            "lag_history": reverse("tally-lag-history", args=[channel.id]),
        },
    }


def dashboard_data(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    rolled = last_rolled_up()
    cards = [channel_card(channel, now, rolled=rolled) for channel in Channel.objects.order_by("slug")]
    totals = {health: sum(1 for c in cards if c["health"] == health) for health in HEALTH_COLOURS}
    inbox_totals = dict(InboundEvent.objects.filter(status__in=DEAD_STATUSES).order_by().values("status")
                        .annotate(n=Count("id")).values_list("status", "n"))
    return {"generated_at": now, "refresh_seconds": REFRESH_SECONDS, "flower_url": flower_url(), "channels": cards,
            "totals": totals, "inbox_dead_lettered": inbox_totals}


# --- the chart -------------------------------------------------------------------------------------


def _nice_ceiling(value: float) -> float:
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def format_ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    return f"{value / 60_000:.1f} min"


def lag_chart(buckets: list[dict], width: int = 380, height: int = 130, *,
              axis: tuple[str, str, str] = ("-60m", "-30m", "now"),
              title: str = "Sync lag per minute over the last hour (p50, p95, p99)",
              empty: str = "no acknowledged pushes in the last hour") -> SafeString:
    """Inline SVG: p50/p95/p99 sync lag per bucket (a minute of the last hour, or a span of the rolled-up
    history); buckets with no pushes leave gaps."""
    left, right, top, bottom = 52, 8, 8, 20
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((b["p99"] or 0 for b in buckets), default=0)
    ceiling = _nice_ceiling(peak) if peak else 1000.0
    n = max(len(buckets) - 1, 1)

    def x(i: int) -> float:
        return left + plot_w * i / n

    def y(v: float) -> float:
        return top + plot_h * (1 - min(v, ceiling) / ceiling)

    parts = [f'<svg class="tally-chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for fraction in (0, 0.5, 1):
        gy = top + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}"/>'
                     f'<text class="axis" x="{left - 4}" y="{gy + 3:.1f}" text-anchor="end">'
                     f'{escape(format_ms(ceiling * fraction))}</text>')
    for label, minute, anchor in zip(axis, (0, len(buckets) // 2, len(buckets) - 1), ("start", "middle", "end"),
                                     strict=True):
        parts.append(f'<text class="axis" x="{x(minute):.1f}" y="{height - 5}" text-anchor="{anchor}">'
                     f'{escape(label)}</text>')
    drawn = 0
    for label, _, colour in SERIES:
        segment: list[str] = []
        segments: list[list[str]] = []
        for i, bucket in enumerate(buckets):
            if bucket[label] is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{x(i):.1f},{y(bucket[label]):.1f}")
        if segment:
            segments.append(segment)
        for points in segments:
            drawn += 1
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle class="{label}" cx="{cx}" cy="{cy}" r="2.2" fill="{colour}"/>')
            else:
                parts.append(f'<polyline class="{label}" fill="none" stroke="{colour}" stroke-width="1.6" '
                             f'points="{" ".join(points)}"/>')
    if not drawn:
        parts.append(f'<text class="empty" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
                     f'text-anchor="middle">{escape(empty)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - built from numbers and escaped text only


# --- views -----------------------------------------------------------------------------------------


def _context(request, data: dict) -> dict:
    return {**admin.site.each_context(request), "title": "Sync dashboard", "data": data,
            "data_url": reverse("tally-dashboard-data"), "flower_link": reverse("tally-flower")}


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = (now - moment).total_seconds()
    if seconds < 1:
        return "just now"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _with_display(data: dict) -> dict:
    """Pre-formatted strings the template shows (templates cannot call functions with arguments)."""
    now = data["generated_at"]
    for card in data["channels"]:
        card["ago"] = {"webhook": ago(card["last_webhook_at"], now), "push": ago(card["last_push_at"], now),
                       "error": ago(card["last_push_error_at"], now),
                       "reconcile": ago(card["reconcile"]["at"], now) if card["reconcile"] else "never"}
        card["lag_display"] = {window: {k: format_ms(v) for k, v in values.items() if k.endswith("_ms")}
                               | {"count": values["count"]} for window, values in card["sync_lag"].items()}
        card["oldest_unpushed_display"] = format_ms(card["oldest_unpushed_seconds"] * 1000)
    return data


def dashboard_view(request):
    data = _with_display(dashboard_data())
    return render(request, "admin/dashboard/index.html", _context(request, data))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "chart"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def dashboard_data_view(request):
    data = _with_display(dashboard_data())
    html = render_to_string("admin/dashboard/body.html", _context(request, data), request=request)
    payload = _jsonable(data)
    for card in payload["channels"]:
        card.pop("lag_display", None)
        card.pop("ago", None)
    return JsonResponse({**payload, "html": html})  # admin_view adds never_cache


HISTORY_HOURS = (24, 24 * 7, 24 * 30)


def lag_history_view(request, channel_id: int):
    """The channel's sync lag over a day, a week or a month, from the per-minute rollups (``channels_app.rollups``):
    each point the worst minute of its span."""
    from channels_app.rollups import lag_history

    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        return render(request, "admin/dashboard/lag_history.html", {**admin.site.each_context(request),
                      "title": "Sync lag history", "missing": channel_id}, status=404)
    charts = []
    for hours in HISTORY_HOURS:
        spans = lag_history(channel.id, hours=hours)
        label = f"-{hours // 24}d" if hours >= 48 else f"-{hours}h"
        half = f"-{hours // 48}d" if hours >= 96 else f"-{hours // 2}h"
        charts.append({"hours": hours, "label": label, "pushes": sum(span["count"] for span in spans),
                       "chart": lag_chart(spans, width=760, height=160, axis=(label, half, "now"),
                                          title=f"Sync lag of {channel.slug}, worst minute per span, {label}",
                                          empty="no acknowledged pushes in this time")})
    return render(request, "admin/dashboard/lag_history.html", {
        **admin.site.each_context(request), "title": f"Sync lag history: {channel.slug}", "channel": channel,
        "charts": charts, "minutes_url": _changelist("channels_app_synclagminute", channel__id__exact=channel.id)})


def flower_redirect(request):
    return HttpResponseRedirect(flower_url())


urlpatterns = [
    path("", admin.site.admin_view(dashboard_view), name="tally-dashboard"),
    path("data.json", admin.site.admin_view(dashboard_data_view), name="tally-dashboard-data"),
    path("flower/", admin.site.admin_view(flower_redirect), name="tally-flower"),
    path("lag/<int:channel_id>/", admin.site.admin_view(lag_history_view), name="tally-lag-history"),
]
