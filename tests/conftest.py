from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@pytest.fixture(autouse=True, scope="session")
def _require_postgresql(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        assert connection.vendor == "postgresql", "The suite runs on PostgreSQL: use `make test` or set DATABASE_URL."


@pytest.fixture
def api_user(db, django_user_model):
    return django_user_model.objects.create_user(username="merchant", password="pw-merchant-1")


@pytest.fixture
def api(api_user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=api_user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client
