"""Shared fixtures for the security tests: a staff user with an API token, and some realistic data."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token


@pytest.fixture
def staff_token(db, django_user_model) -> str:
    user = django_user_model.objects.create_user(username="sec-staff", password="pw-staff-1", is_staff=True)
    token, _ = Token.objects.get_or_create(user=user)
    return token.key
