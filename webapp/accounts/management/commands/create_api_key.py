from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.accounts.services import api_key_create
from webapp.core.errors import ValidationFailed


class Command(BaseCommand):
    help = "Create an API key for a user and print it once (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="username of the key's owner")
        parser.add_argument("--name", default="cli", help="a label for the key (default: cli)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=options["user"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {options['user']!r}")
        try:
            issued = api_key_create(owner=user, name=options["name"])
        except ValidationFailed as exc:
            raise CommandError(exc.message)
        self.stdout.write(issued.raw)
        self.stderr.write(f"Key “{issued.api_key.name}” for {user.username}: shown once, store it now.")
