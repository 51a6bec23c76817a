"""Channel credentials and webhook secrets: encrypted in the database, never returned by the API or the admin,
and unreadable without the key in TALLY_ENCRYPTION_KEYS."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core import serializers
from django.db import connection
from rest_framework.test import APIClient

from channels_app.models import Channel
from hub.crypto import PREFIX, _fernet, decrypt

pytestmark = pytest.mark.django_db

ACCESS_TOKEN = "shpat_SEC_plaintext_access_token_7f3a"
API_SECRET = "api-secret-SEC-b81c2d"
WEBHOOK_SECRET = "whsec-SEC-plaintext-44e1"
ROTATED_SECRET = "whsec-SEC-rotated-9d02"
PLAINTEXTS = (ACCESS_TOKEN, API_SECRET, WEBHOOK_SECRET, ROTATED_SECRET)


@pytest.fixture
def key_a(monkeypatch) -> str:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("TALLY_ENCRYPTION_KEYS", key)
    _fernet.cache_clear()
    yield key
    _fernet.cache_clear()  # before monkeypatch restores the environment; the next use reads it afresh


def use_keys(monkeypatch, keys: str) -> None:
    monkeypatch.setenv("TALLY_ENCRYPTION_KEYS", keys)
    _fernet.cache_clear()


@pytest.fixture
def client(staff_token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {staff_token}")
    return client


def raw_row(slug: str) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM channels_app_channel WHERE slug = %s", [slug])
        names = [column.name for column in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


def assert_no_plaintext(text: str) -> None:
    for secret in PLAINTEXTS:
        assert secret not in text, f"{secret!r} found"


def create_channel(client) -> dict:
    response = client.post("/api/v1/channels/", {
        "slug": "sec-shop", "name": "Sec shop", "kind": "shopify", "api_base_url": "https://sec.example/",
        "credentials": {"access_token": ACCESS_TOKEN, "api_secret": API_SECRET}, "webhook_secret": WEBHOOK_SECRET,
    }, format="json")
    assert response.status_code == 201, response.content
    return response


def test_secrets_are_encrypted_in_the_row_and_never_returned(client, key_a):
    created = create_channel(client)
    assert_no_plaintext(created.content.decode())
    assert created.json()["has_credentials"] is True and created.json()["has_webhook_secret"] is True

    row = raw_row("sec-shop")
    assert_no_plaintext(repr(row))
    assert row["credentials"].startswith(PREFIX) and row["webhook_secret"].startswith(PREFIX)

    # Rotation: the new secret and the previous one (kept for the overlap) are both stored encrypted.
    patched = client.patch("/api/v1/channels/sec-shop/", {"webhook_secret": ROTATED_SECRET}, format="json")
    assert patched.status_code == 200, patched.content
    assert_no_plaintext(patched.content.decode())
    row = raw_row("sec-shop")
    assert_no_plaintext(repr(row))
    assert row["previous_webhook_secret"].startswith(PREFIX)
    assert decrypt(row["previous_webhook_secret"]) == WEBHOOK_SECRET and decrypt(row["webhook_secret"]) == ROTATED_SECRET

    for url in ("/api/v1/channels/", "/api/v1/channels/sec-shop/", "/api/v1/channels/sec-shop/sync-status/",
                "/api/v1/channels/sec-shop/preview/", "/api/v1/channels/sec-shop/listings/", "/api/schema/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert_no_plaintext(response.content.decode())


def test_credentials_are_not_serialised(key_a):
    Channel.objects.create(slug="sec-ser", name="s", kind="shopify", credentials={"access_token": ACCESS_TOKEN})
    assert_no_plaintext(serializers.serialize("json", Channel.objects.all()))


def test_webhook_secrets_are_not_serialised(key_a):
    Channel.objects.create(slug="sec-ser", name="s", kind="shopify", webhook_secret=WEBHOOK_SECRET,
                           previous_webhook_secret=ROTATED_SECRET)
    assert_no_plaintext(serializers.serialize("json", Channel.objects.all()))


def test_admin_change_page_does_not_show_secrets(client, key_a, django_user_model):
    create_channel(client)
    django_user_model.objects.create_superuser(username="sec-root", password="pw-root-1")
    admin = APIClient()
    admin.login(username="sec-root", password="pw-root-1")
    channel = Channel.objects.get(slug="sec-shop")
    for url in (f"/admin/channels_app/channel/{channel.pk}/change/", "/admin/channels_app/channel/",
                f"/admin/channels_app/channel/{channel.pk}/history/"):
        response = admin.get(url)
        assert response.status_code == 200, url
        assert_no_plaintext(response.content.decode())


def test_stored_secrets_need_the_key(client, key_a, monkeypatch):
    create_channel(client)
    stored = raw_row("sec-shop")

    use_keys(monkeypatch, Fernet.generate_key().decode())
    for column in ("credentials", "webhook_secret"):
        with pytest.raises(ValueError, match="TALLY_ENCRYPTION_KEYS"):
            decrypt(stored[column])
    with pytest.raises(ValueError):
        Channel.objects.get(slug="sec-shop")

    # A new key in front of the old one (a rotation in progress) still reads what the old one wrote.
    use_keys(monkeypatch, f"{Fernet.generate_key().decode()},{key_a}")
    assert Channel.objects.get(slug="sec-shop").webhook_secret == WEBHOOK_SECRET

    use_keys(monkeypatch, key_a)
    channel = Channel.objects.get(slug="sec-shop")
    assert channel.credentials == {"access_token": ACCESS_TOKEN, "api_secret": API_SECRET}
    assert channel.webhook_secret == WEBHOOK_SECRET
    assert decrypt(stored["webhook_secret"]) == WEBHOOK_SECRET


def test_the_same_secret_encrypts_differently_each_time(key_a):
    first = Channel.objects.create(slug="sec-a", name="a", kind="shopify", webhook_secret=WEBHOOK_SECRET)
    second = Channel.objects.create(slug="sec-b", name="b", kind="shopify", webhook_secret=WEBHOOK_SECRET)
    assert raw_row(first.slug)["webhook_secret"] != raw_row(second.slug)["webhook_secret"]


def test_moving_a_channels_api_address_needs_its_credentials_again(client, key_a):
    """The stored token goes to whatever address the channel names: any API user could PATCH the address to a host of
    their own and then ask for a resync, and the platform's token went there (review finding, 2026-12-07)."""
    create_channel(client)
    moved = client.patch("/api/v1/channels/sec-shop/", {"api_base_url": "https://evil.example"}, format="json")
    assert moved.status_code == 400 and "credentials" in str(moved.json()["api_base_url"])
    assert Channel.objects.get(slug="sec-shop").api_base_url == "https://sec.example/"
    same = client.patch("/api/v1/channels/sec-shop/", {"api_base_url": "https://sec.example"}, format="json")
    assert same.status_code == 200  # the same address, written another way
    with_them = client.patch("/api/v1/channels/sec-shop/", {
        "api_base_url": "https://new.example", "credentials": {"access_token": "shpat_NEW"}}, format="json")
    assert with_them.status_code == 200, with_them.content
    assert Channel.objects.get(slug="sec-shop").credentials == {"access_token": "shpat_NEW"}
