"""Create (or reset) the demo admin login and write its password to a file only the owner can read."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo superuser 'admin' with a random password (kept across runs)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password-file", default="var/admin-password")

    def handle(self, *args, username, password_file, **options):
        path = Path(password_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        password = path.read_text().strip() if path.exists() else secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": "admin@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        path.write_text(password + "\n")
        os.chmod(path, 0o600)
        self.stdout.write(self.style.SUCCESS(f"Admin login: {username} (password in {path})"))
