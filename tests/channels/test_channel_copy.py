"""The pushers' copy of a channel: reused while its configuration row is unchanged, rebuilt on any change."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import Channel
from channels_app.selectors import channel_for_push
from tests.channels.helpers import make_channel

pytestmark = pytest.mark.django_db


def test_an_unchanged_channel_is_one_plain_read_and_the_same_copy():
    channel = make_channel("shopify")
    first = channel_for_push(channel.pk)
    with CaptureQueriesContext(connection) as queries:
        again = channel_for_push(channel.pk)
    assert again is first
    assert len(queries.captured_queries) == 1


def test_what_the_pushers_write_themselves_keeps_the_copy():
    channel = make_channel("shopify")
    first = channel_for_push(channel.pk)
    Channel.objects.filter(pk=channel.pk).update(last_push_at=timezone.now(), last_push_error="boom")
    assert channel_for_push(channel.pk) is first


@pytest.mark.parametrize(("field", "value"), [("safety_buffer", 7), ("enabled", False), ("paused", True),
                                              ("allocation_target", 3), ("api_base_url", "http://127.0.0.1:1")])
def test_any_configuration_change_is_seen_even_behind_the_orms_back(field, value):
    channel = make_channel("shopify")
    first = channel_for_push(channel.pk)
    Channel.objects.filter(pk=channel.pk).update(**{field: value})  # no save(): updated_at does not move
    fresh = channel_for_push(channel.pk)
    assert fresh is not first
    assert getattr(fresh, field) == value


def test_new_credentials_are_seen():
    channel = make_channel("shopify")
    channel_for_push(channel.pk)
    channel.credentials = {"access_token": "rotated"}
    channel.save()
    assert channel_for_push(channel.pk).credentials == {"access_token": "rotated"}


def test_a_deleted_channel_is_gone():
    channel = make_channel("shopify")
    channel_for_push(channel.pk)
    pk = channel.pk
    Channel.objects.filter(pk=pk).delete()
    assert channel_for_push(pk) is None
