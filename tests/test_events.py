"""Outgoing events: signed the Standard Webhooks way, retried, logged per attempt, replayable."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from hub import events
from hub.models import DeliveryStatus, EventDelivery, Subscription
from inventory_app import orders, stock
from inventory_app.stock import LineRequest
from tests.factories import make_location, make_sku

pytestmark = pytest.mark.django_db


class Drip:
    """An answer that never ends: the status and headers at once, then a byte of a long body every 0.1 s, until
    the body is sent or the sender hangs up (``hung_up_after``: the bytes sent by then)."""

    def __init__(self, status: int, length: int = 1000):
        self.status, self.length, self.hung_up_after = status, length, None

    def send(self, handler) -> None:
        handler.send_response(self.status)
        handler.send_header("Content-Length", str(self.length))
        handler.end_headers()
        for sent in range(self.length):
            try:
                handler.wfile.write(b"x")
                handler.wfile.flush()
            except OSError:
                self.hung_up_after = sent
                return
            time.sleep(0.1)


class Receiver:
    """A subscriber's endpoint: verifies every call with the reference library, answers from a script."""

    def __init__(self, answers: list[int]):
        self.answers, self.received = list(answers), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                Webhook(outer.secret).verify(body.decode(), headers)  # raises if the signature is wrong
                outer.received.append((headers, json.loads(body)))
                answer = outer.answers.pop(0) if outer.answers else 200
                if isinstance(answer, Drip):
                    return answer.send(self)
                # An answer: a status, or (status, headers, body).
                status, extra, payload = answer if isinstance(answer, tuple) else (answer, {}, b"")
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.secret = events.new_secret()

    def subscribe(self, *types: str) -> Subscription:
        events.forget_subscribers()
        return Subscription.objects.create(name="erp", url=self.url, secret=self.secret, event_types=list(types))

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    made = []

    def make(answers=()):
        made.append(Receiver(list(answers)))
        return made[-1]

    yield make
    for r in made:
        r.close()
    events.forget_subscribers()


def due(delivery: EventDelivery) -> int:
    EventDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    return delivery.pk


def test_stock_change_is_delivered_signed_and_retried_with_the_same_id(receiver):
    r = receiver([500, 200])
    r.subscribe("stock.changed")
    wh = make_location()
    tee = make_sku("TEE")
    stock.receive(sku=tee, location=wh, quantity=5)
    delivery = EventDelivery.objects.get()
    assert events.deliver(delivery.pk) == DeliveryStatus.PENDING
    assert events.deliver(due(delivery)) == DeliveryStatus.DELIVERED
    (first, body), (second, _) = r.received
    assert first["webhook-id"] == second["webhook-id"] == delivery.message_id
    assert body["type"] == "stock.changed" and body["data"]["sku"] == "TEE" and body["data"]["on_hand"] == 5
    assert [a.status_code for a in EventDelivery.objects.get().attempt_log.all()] == [500, 200]


def test_410_disables_the_subscription(receiver):
    r = receiver([410])
    sub = r.subscribe()
    events.emit("order.created", {"order": "1"})
    events.deliver(EventDelivery.objects.get().pk)
    sub.refresh_from_db()
    assert not sub.enabled and "410" in sub.disabled_reason
    assert events.emit("order.created", {"order": "2"}) == 0


def test_gives_up_after_the_schedule_and_replays(receiver):
    r = receiver([503] * (len(events.RETRY_SCHEDULE) + 1))
    r.subscribe("order.created")
    events.emit("order.created", {"order": "1"})
    delivery = EventDelivery.objects.get()
    for _ in range(len(events.RETRY_SCHEDULE) + 1):
        events.deliver(due(delivery))
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DEAD and delivery.attempts == len(events.RETRY_SCHEDULE) + 1
    assert events.replay([delivery.pk]) == 1
    assert events.deliver(delivery.pk) == DeliveryStatus.DELIVERED


@pytest.mark.parametrize("retry_after", [None, "120", "nan", "inf", "1e12", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_receivers_retry_after_is_honoured_within_bounds_and_the_attempt_always_recorded(receiver, retry_after):
    """A 502 without Retry-After waits the schedule's first step (5 s); 429 with Retry-After waits that long (120 s
    here, past it). A value
    the arithmetic could not take (nan, inf, 1e12, the year 9999) raised after the POST: the attempt rolled back
    unrecorded, the delivery stayed due and was sent again every few seconds, for ever (review finding,
    2026-12-07). It is recorded, and waits at most an hour."""
    from channels_app.adapters.http import MAX_RETRY_AFTER

    r = receiver([(429, {"Retry-After": retry_after}, b"")] if retry_after else [502])
    r.subscribe()
    events.emit("order.created", {})
    delivery = EventDelivery.objects.get()
    before = timezone.now()
    events.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.attempt_log.count() == 1
    wait = (delivery.next_attempt_at - before).total_seconds()
    if retry_after is None:
        assert events.RETRY_SCHEDULE[0] <= wait < events.RETRY_SCHEDULE[0] + 5
    elif retry_after == "120":
        assert 120 <= wait < 125
    else:
        assert events.RETRY_SCHEDULE[0] <= wait <= MAX_RETRY_AFTER + 5


def test_an_error_body_the_database_cannot_store_is_recorded_shown(receiver):
    """A receiver's 500 whose body held a NUL: the attempt's record was refused, rolled back with the attempt, and
    the delivery sent again every few seconds, for ever (review finding, 2026-12-07)."""
    r = receiver([(500, {}, b"broken\x00body")])
    r.subscribe()
    events.emit("order.created", {})
    delivery = EventDelivery.objects.get()
    events.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and "broken\\x00body" in delivery.last_error


def test_a_subscription_deleted_elsewhere_fails_no_order(receiver):
    """Subscribers are cached per process for a few seconds: one deleted in another process (the admin) was still
    named here, and the order's whole transaction failed at commit on the deliveries' foreign key (review finding,
    2026-12-07). The deleted one gets nothing; the order stands."""
    from django.db import connection

    r = receiver([])
    sub = r.subscribe("order.created")
    gone = Subscription.objects.create(name="old", url=r.url, secret=r.secret, event_types=["order.created"])
    events.forget_subscribers()
    assert events.emit("order.created", {"order": "0"}) == 2  # both cached now
    Subscription.objects.filter(pk=gone.pk).delete()  # as another process would: this one's cache still names it
    wh = make_location()
    tee = make_sku(stock_at={wh: 5})
    orders.place_order(channel="shop", external_id="77", lines=[orders.OrderLineRequest("a", tee, 1)])
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the foreign keys' check at commit, now
    assert EventDelivery.objects.filter(subscription=sub).count() == 2
    assert not EventDelivery.objects.filter(subscription_id=gone.pk).exists()


def test_orders_and_expiries_are_events(receiver):
    r = receiver()
    r.subscribe("order.created", "reservation.expired")
    wh = make_location()
    tee = make_sku("TEE", stock_at={wh: 3})
    orders.place_order(channel="shop", external_id="9", lines=[orders.OrderLineRequest("1", tee, 1)])
    stock.reserve(lines=[LineRequest("TEE", 1)], ttl_seconds=1)
    stock.expire_due(now=timezone.now() + timedelta(seconds=5))
    assert sorted(EventDelivery.objects.values_list("event_type", flat=True)) == ["order.created", "reservation.expired"]


def test_a_repeated_order_with_new_lines_is_an_update_not_a_second_order(receiver):
    """A channel order seen again with a line it did not have fired order.created a second time (review finding,
    2026-12-07): an ERP books each order.created as an order. The new lines are an order.updated; a repeat with
    nothing new sends nothing."""
    every, created_only = receiver(), receiver()
    every.subscribe()
    created_only.subscribe("order.created")
    events.forget_subscribers()
    wh = make_location()
    tee, cap = make_sku("TEE", stock_at={wh: 5}), make_sku("CAP", stock_at={wh: 5})
    orders.place_order(channel="shop", external_id="9", lines=[orders.OrderLineRequest("1", tee, 1)])
    orders.place_order(channel="shop", external_id="9", lines=[orders.OrderLineRequest("1", tee, 1),
                                                               orders.OrderLineRequest("2", cap, 2)])
    orders.place_order(channel="shop", external_id="9", lines=[orders.OrderLineRequest("1", tee, 1),
                                                               orders.OrderLineRequest("2", cap, 2)])
    sent = {(d.subscription.url, d.event_type): d.payload["data"] for d in EventDelivery.objects.filter(
        event_type__startswith="order.").select_related("subscription")}
    assert sorted(sent) == sorted([(every.url, "order.created"), (every.url, "order.updated"),
                                   (created_only.url, "order.created")])
    assert [line["line"] for line in sent[(every.url, "order.created")]["lines"]] == ["1"]
    assert sent[(every.url, "order.updated")]["lines"] == [
        {"line": "2", "sku": "CAP", "quantity": 2, "status": "committed"}]
    assert "total" in sent[(every.url, "order.created")] and "total" not in sent[(every.url, "order.updated")]


def test_a_subscriptions_event_types_are_known_ones():
    """Typed as JSON in the admin, a misspelt type ("order.create") was saved and matched no event: the subscriber
    silently received nothing. The admin offers the known types; the model refuses others from anywhere."""
    from django.core.exceptions import ValidationError

    from hub.admin import SubscriptionForm

    base = {"name": "erp", "url": "https://erp.invalid/hooks", "enabled": True, "disabled_reason": ""}
    form = SubscriptionForm(data={**base, "event_types": ["order.create"]})
    assert not form.is_valid() and "event_types" in form.errors
    form = SubscriptionForm(data={**base, "event_types": ["order.created", "order.updated"]})
    assert form.is_valid(), form.errors
    form.instance.secret = events.new_secret()
    assert form.save().event_types == ["order.created", "order.updated"]
    assert SubscriptionForm(data=base).is_valid()  # none ticked: every event
    for bad in (["order.create"], "order.created", [1]):
        with pytest.raises(ValidationError) as refused:
            Subscription(name="x", url="https://x.example.com/", secret="whsec_x", event_types=bad).full_clean()
        assert "event_types" in refused.value.message_dict


def test_no_subscriber_no_rows():
    events.forget_subscribers()
    wh = make_location()
    stock.receive(sku=make_sku(), location=wh, quantity=1)
    assert EventDelivery.objects.count() == 0


@pytest.mark.parametrize("status", [200, 500])
def test_a_receiver_that_answers_a_byte_at_a_time_costs_one_bounded_attempt(receiver, status):
    """A receiver answering a byte every 0.1 s of a 1,000-byte body (100 s): each read within the timeout, so the
    sender waited for all of it inside the claim's transaction, until Celery's time limit killed the task and
    rolled the attempt back unrecorded (sent again seconds later, for ever; review finding, 2026-12-07). A success's
    body is not read at all; of a failure's, what arrives within a few seconds."""
    drip = Drip(status)
    r = receiver([drip])
    r.subscribe("stock.changed")
    stock.receive(sku=make_sku(), location=make_location(), quantity=5)
    delivery = EventDelivery.objects.get()
    assert events.deliver(due(delivery)) == ("delivered" if status == 200 else "pending")
    for _ in range(50):  # the receiver notices the hang-up at its next write
        if drip.hung_up_after is not None:
            break
        time.sleep(0.1)
    assert drip.hung_up_after is not None and drip.hung_up_after < drip.length
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.attempt_log.count() == 1
    if status == 500:
        assert delivery.last_error.startswith("HTTP 500: x") and delivery.attempt_log.get().status_code == 500


def test_an_attempt_whose_sender_never_came_back_counts_and_the_schedule_still_ends(receiver):
    """The attempt is counted when it is claimed: a sender killed before the answer leaves it logged as unanswered,
    tried again later, and once the schedule is spent the delivery is dead, not sent for ever."""
    r = receiver([])
    r.subscribe("stock.changed")
    stock.receive(sku=make_sku(), location=make_location(), quantity=5)
    delivery = EventDelivery.objects.get()
    for attempt in range(1, len(events.RETRY_SCHEDULE) + 2):
        claimed, attempt_id = events._claim(due(delivery))  # the sender dies here, before it posts
        assert claimed.attempts == attempt and attempt_id is not None
        assert events._claim(delivery.pk) is None  # not due again until CLAIM_SECONDS have passed
    assert events.deliver(due(delivery)) == DeliveryStatus.DEAD
    delivery.refresh_from_db()
    assert delivery.last_error == events.NO_ANSWER and r.received == []
    assert delivery.attempt_log.filter(error=events.NO_ANSWER).count() == len(events.RETRY_SCHEDULE) + 1


def test_the_admin_adds_a_subscription_with_ticked_types_and_shows_its_secret_once(admin_client):
    page = admin_client.get("/admin/hub/subscription/add/")
    assert page.status_code == 200 and b'value="order.updated"' in page.content
    answer = admin_client.post("/admin/hub/subscription/add/", {
        "name": "erp", "url": "https://erp.invalid/hooks", "event_types": ["order.created", "order.updated"],
        "enabled": "on", "disabled_reason": ""}, follow=True)
    sub = Subscription.objects.get(name="erp")
    assert sub.event_types == ["order.created", "order.updated"] and sub.secret.startswith("whsec_")
    assert sub.secret in answer.content.decode()
    assert admin_client.get(f"/admin/hub/subscription/{sub.pk}/change/").status_code == 200


def test_events_are_never_sent_to_link_local_and_to_private_addresses_only_when_allowed(receiver, settings):
    """A subscription's URL is called and its error answers shown in the admin: aimed at the cloud's metadata
    service or a page inside the network, a delivery read it for whoever set the URL (review finding, 2026-12-07).
    Link-local is never called; loopback and private addresses only with TALLY_EVENTS_ALLOW_PRIVATE_URLS."""
    from django.core.exceptions import ValidationError

    from hub.addresses import refused_address

    r = receiver([])
    settings.TALLY_EVENTS_ALLOW_PRIVATE_URLS = False
    sub = r.subscribe("order.created")
    [delivery_id] = [d.pk for d in EventDelivery.objects.bulk_create([EventDelivery(
        subscription=sub, message_id="msg_private", event_type="order.created", payload={}, next_attempt_at=timezone.now())])]
    events.deliver(delivery_id)
    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert r.received == [] and delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert "private address" in delivery.last_error and "TALLY_EVENTS_ALLOW_PRIVATE_URLS" in delivery.last_error
    assert "private address" in delivery.attempt_log.get().error
    with pytest.raises(ValidationError) as refused:
        Subscription(name="x", url=r.url, secret="whsec_x", event_types=[]).full_clean()
    assert "url" in refused.value.message_dict

    settings.TALLY_EVENTS_ALLOW_PRIVATE_URLS = True
    events.deliver(due(delivery))
    assert len(r.received) == 1 and EventDelivery.objects.get(pk=delivery_id).status == DeliveryStatus.DELIVERED
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://0.0.0.0:8000/",
                "http://[::ffff:169.254.169.254]/", "http://224.0.0.1/", "http://[fd00:ec2::254]/",
                "http://100.100.100.200/", "http://168.63.129.16/",
                # A backslash: the standard parser reads example.com, the HTTP client 169.254.169.254 (review).
                "http://169.254.169.254\\@example.com/latest/meta-data/", "http://10.0.0.5:8080\\@example.com/"):
        assert refused_address(url), url
    assert refused_address("http://user:pw@127.0.0.1:9/") is None  # credentials in a URL are fine; the host counts
    assert "does not resolve" in refused_address("https://erp.invalid/hooks")  # at send: refused, tried again later
    assert refused_address("https://erp.invalid/hooks", unresolved_ok=True) is None  # saved before it is up
    assert refused_address("http:///no-host")


def test_a_name_that_resolves_outside_for_the_check_and_inside_for_the_request_is_not_called(receiver, settings,
                                                                                                monkeypatch):
    """DNS rebinding: the receiver's DNS server answers the check before the attempt with a public address and the
    request a moment later with the machine's own. The connection checks the address it opens, so nothing inside is
    called; with inside addresses allowed, the same name is delivered to (the check does not refuse the name)."""
    import socket

    r = receiver([])
    settings.TALLY_EVENTS_ALLOW_PRIVATE_URLS = False
    port = r.server.server_address[1]
    sub = r.subscribe("order.created")
    Subscription.objects.filter(pk=sub.pk).update(url=f"http://rebind.example:{port}/hooks")
    events.forget_subscribers()
    answers = iter(["93.184.216.34"])  # the first lookup: public; every one after it: loopback
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host != "rebind.example":
            return real(host, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (next(answers, "127.0.0.1"), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    [delivery_id] = [d.pk for d in EventDelivery.objects.bulk_create([EventDelivery(
        subscription=sub, message_id="msg_rebind", event_type="order.created", payload={}, next_attempt_at=timezone.now())])]
    events.deliver(delivery_id)
    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert r.received == [] and delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert "rebind.example is 127.0.0.1, a private address" in delivery.last_error

    settings.TALLY_EVENTS_ALLOW_PRIVATE_URLS = True
    events.deliver(due(delivery))
    assert len(r.received) == 1 and EventDelivery.objects.get(pk=delivery_id).status == DeliveryStatus.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_subscribers_to_order_created_are_given_order_updated_by_the_migration():
    """Their repeated orders' new lines came as order.created; now they are order.updated, which a subscription
    naming only order.created would not hear of."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("hub", "0002_subscriptions")], [("hub", "0003_order_updated_for_order_created_subscribers")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("hub", "Subscription")
    for name, types in (("erp", ["order.created"]), ("wms", ["stock.changed"]), ("all", []),
                        ("both", ["order.created", "order.updated"])):
        old.objects.create(name=name, url="https://x.invalid/", secret="whsec_x", event_types=types)
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    assert dict(Subscription.objects.values_list("name", "event_types")) == {
        "erp": ["order.created", "order.updated"], "wms": ["stock.changed"], "all": [],
        "both": ["order.created", "order.updated"]}
