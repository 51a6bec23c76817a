"""Structured logs with a correlation id, secret redaction, and the Prometheus endpoint.

The correlation id is born at webhook receipt (the inbox row's id), travels in a Celery message
header to the processing task, from there to every push task that processing wakes, and is
written on each log line and each push record.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
from datetime import UTC, datetime

from django.http import HttpResponse

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")
HEADER = "tally_correlation_id"

_SECRET_PATTERNS = [
    re.compile(r"whsec_[A-Za-z0-9+/=]{8,}"),
    re.compile(r"shpat_[A-Za-z0-9]{8,}"),
    re.compile(r"\b(ck|cs)_[A-Za-z0-9]{16,}"),
    re.compile(r"\bAtz[ar]\|[A-Za-z0-9_\-.|=+/]{8,}"),  # Login with Amazon's access and refresh tokens
    re.compile(r"(?i)(authorization|x-shopify-access-token|x-auth-token|x-amz-access-token)(['\"]?\s*[:=]\s*['\"]?)([^'\",\n]+)"),
    re.compile(r"(?i)(password|secret|token)(['\"]?\s*[:=]\s*['\"]?)([^'\",\s]{4,})"),
]


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        if pattern.groups >= 3:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
        else:
            text = pattern.sub("[redacted]", text)
    return text


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id, and any ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": correlation_id.get() or None,
            "process": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        cid = correlation_id.get()
        return redact(f"{text} [cid={cid}]" if cid else text)


class RedactFilter(logging.Filter):
    """Last line of defence for third-party loggers that format secrets into messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and not record.args:
            record.msg = redact(record.msg)
        return True


class TaskSuccessFilter(logging.Filter):
    """Drops Celery's "Task ... succeeded" line (``celery.app.trace``), kept where ``LOG_TASK_SUCCESS`` is set.

    A push worker runs tens of tasks a second; formatting and redacting a JSON line for each success was 3.5% of
    its CPU (py-spy, bench/propagation.py at 50 orders/s), for lines Flower and the metrics already hold. Task
    failures, retries and everything else Celery logs are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        from celery.app.trace import LOG_SUCCESS

        return record.msg != LOG_SUCCESS


# --- Celery: carry the id in message headers --------------------------------------------------

def install_celery_hooks() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun

    @before_task_publish.connect(weak=False)
    def _publish(headers=None, **kwargs):
        cid = correlation_id.get()
        if cid and headers is not None:
            headers.setdefault(HEADER, cid)

    @task_prerun.connect(weak=False)
    def _prerun(task=None, **kwargs):
        if task is None:
            return
        cid = getattr(task.request, HEADER, None) or (task.request.headers or {}).get(HEADER) or ""
        task.request._tally_token = correlation_id.set(cid)

    @task_postrun.connect(weak=False)
    def _postrun(task=None, **kwargs):
        token = getattr(task.request, "_tally_token", None)
        if token is not None:
            correlation_id.reset(token)


# --- Prometheus ------------------------------------------------------------------------------

class BacklogCollector:
    """Gauges read from the database at scrape time (the rows are the truth, in every process)."""

    def collect(self):
        from django.db.models import Count, F, Q
        from prometheus_client.core import GaugeMetricFamily

        from channels_app.models import Channel, InboundEvent, InboundStatus

        backlog = GaugeMetricFamily("tally_push_backlog_listings", "Listings waiting to be pushed", labels=["channel"])
        failed = GaugeMetricFamily("tally_failed_listings", "Listings parked after the retry budget", labels=["channel"])
        inbox = GaugeMetricFamily("tally_inbox_events", "Inbox events by status", labels=["channel", "status"])
        for row in Channel.objects.annotate(
            backlog=Count("listings", filter=Q(listings__desired_version__gt=F("listings__pushed_version"))
                          & ~Q(listings__status="failed")),
            failed=Count("listings", filter=Q(listings__status="failed")),
        ).values("slug", "backlog", "failed"):
            backlog.add_metric([row["slug"]], row["backlog"])
            failed.add_metric([row["slug"]], row["failed"])
        unfinished = [InboundStatus.PENDING, InboundStatus.RETRYING, InboundStatus.PARKED, InboundStatus.DEAD]
        for row in InboundEvent.objects.filter(status__in=unfinished).values("channel__slug", "status").annotate(n=Count("id")):
            inbox.add_metric([row["channel__slug"], row["status"]], row["n"])
        yield backlog
        yield failed
        yield inbox


def metrics_view(request):
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

    token = os.environ.get("TALLY_METRICS_TOKEN", "")
    if token and request.headers.get("Authorization", "") != f"Bearer {token}":
        return HttpResponse("metrics require the bearer token\n", status=401, content_type="text/plain")
    import channels_app.metrics  # noqa: F401 - registers the counters in this process

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    output = generate_latest(registry)
    backlog = CollectorRegistry()
    backlog.register(BacklogCollector())
    output += generate_latest(backlog)
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)


class CorrelationIdMiddleware:
    """Every request gets a correlation id (the caller's X-Correlation-Id, or a new one), echoed back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        import uuid

        given = request.headers.get("X-Correlation-Id", "")
        cid = given if re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", given or "") else uuid.uuid4().hex
        token = correlation_id.set(cid)
        try:
            response = self.get_response(request)
        finally:
            final = correlation_id.get()
            correlation_id.reset(token)
        response["X-Correlation-Id"] = final
        return response
