"""Celery tasks: thin, idempotent wrappers. The database rows are the record; these only wake work up."""

from __future__ import annotations

from celery import shared_task

from channels_app import inbound, outbound
from channels_app.models import Channel
from channels_app.sync import HELD_BACK_STEP_MS, wake_pushers


@shared_task(name="inbound.process_event")
def process_inbound_event(event_id: int) -> str:
    return inbound.process_event(event_id)


@shared_task(name="inbound.drain")
def drain_inbox() -> int:
    return inbound.drain()


@shared_task(name="inbound.sweep")
def sweep_inbox() -> int:
    return inbound.sweep_inbox()


@shared_task(name="push.channels")
def push_channels(channel_ids: list[int], correlation_id: str = "") -> dict:
    summaries = outbound.push_channels(channel_ids, correlation_id=correlation_id)
    _follow_up(summaries)
    return {str(channel_id): {"claimed": s.claimed, "pushed": s.pushed, "failed": s.failed,
                              "no_change": s.skipped_no_change} for channel_id, s in summaries.items()}


@shared_task(name="push.channel")
def push_channel(channel_id: int, correlation_id: str = "") -> dict:
    """One channel's push (queued by releases before push rounds; kept so their messages still run)."""
    return push_channels([channel_id], correlation_id)[str(channel_id)]


def _follow_up(summaries: dict[int, outbound.PushSummary]) -> None:
    """Wake again the channels of a round that left work behind, those due at about the same time in one task
    (a task per throttled channel was several messages per round at 50 orders/s)."""
    held: dict[int, list[tuple[int, float]]] = {}
    later: dict[int, list[tuple[int, float]]] = {}
    waiting = []
    for channel_id, summary in summaries.items():
        if summary.retry_in is not None:
            # Out of rate-limit tokens (or a 429): one delayed push takes everything that changes meanwhile.
            if summary.retry_in <= 60:
                _in_step(held, channel_id, max(summary.retry_in, 0.05))
        elif summary.failed or not summary.claimed:
            # Retries falling due, or listings another pusher holds; after a clean push nothing is left waiting
            # (a change committed meanwhile has woken its own push).
            waiting.append(channel_id)
    if waiting:
        for channel_id, delay in outbound.next_retry_delays(waiting).items():
            if delay is not None and delay <= 60:
                # Short waits (first retries, another pusher's lease) as a countdown; longer ones are the sweeper's.
                _in_step(later, channel_id, max(delay, 0.05))
    for groups, hold in ((held, True), (later, False)):
        for group in groups.values():
            wake_pushers([channel_id for channel_id, _ in group], countdown=max(d for _, d in group), hold=hold)


def _in_step(groups: dict[int, list[tuple[int, float]]], channel_id: int, delay: float) -> None:
    groups.setdefault(-(-int(delay * 1000) // HELD_BACK_STEP_MS), []).append((channel_id, delay))


@shared_task(name="push.sweep")
def sweep_pushes() -> int:
    recheck = outbound.recheck_conflicted()
    channel_ids = set(outbound.channels_needing_push()) | recheck
    wake_pushers(channel_ids)
    return len(channel_ids)


@shared_task(name="batch.roll_up_sync_lag")
def roll_up_sync_lag() -> int:
    from channels_app.rollups import roll_up_sync_lag as roll_up

    return roll_up()


@shared_task(name="batch.reconcile_channel")
def reconcile_channel(channel_id: int) -> dict:
    from channels_app.reconcile import reconcile_channel as reconcile

    channel = Channel.objects.filter(pk=channel_id, enabled=True).first()
    if channel is None:
        return {"skipped": "channel missing or disabled"}
    run = reconcile(channel)
    return {"run": run.pk, "drifted": run.details.get("drifted"), "variance_percent": str(run.variance_percent)}


@shared_task(name="batch.publish_catalog")
def publish_catalog(channel_id: int) -> dict:
    from channels_app.publishing import publish

    channel = Channel.objects.filter(pk=channel_id, enabled=True, paused=False).first()
    if channel is None:
        return {"skipped": "channel missing, disabled or paused"}
    runs = {stream: publish(channel, stream) for stream in ("catalog", "prices")}
    return {stream: {"sent": run.count_out, "rejected": run.count_rejected} for stream, run in runs.items()}
