"""A Django 5 service's first requests, on psycopg2, against the database at PORT.

    python flow.py PORT migrate   # create the tables (run against the real server)
    python flow.py PORT flow      # the requests; prints one JSON line of results
    python flow.py PORT login     # and a login: the password checked, the session's
                                  # hash of it checked against the user read back
    python flow.py PORT existing  # a login of a user the database held before (made
                                  # by migrate): its hash is not this run's

What the ORM does here is what a service does on a login and an order: a user created
(a password hash with a fresh salt), a database session created (its key checked free,
its data signed with the time) and loaded (as long as it has not expired: as of now),
orders with a uuid4 key and a creation time, read back by key, filtered, updated inside
nested ``atomic()`` blocks (savepoints named after the thread), got or created, counted,
deleted. Run by ``tests/test_django_postgres.py`` through devbox's recording relay, then
against the mock made from that recording.
"""

import json
import os
import sys
from typing import Any

sys.modules["psycopg"] = None  # type: ignore[assignment]  # Django prefers psycopg 3: psycopg2 here

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    SECRET_KEY="devbox-test-" + "x" * 40,
    USE_TZ=True,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "shop",
    ],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "USER": os.environ.get("PGUSER", "devbox"),
            "PASSWORD": os.environ.get("PGPASSWORD", "whatever"),
            "HOST": "127.0.0.1",
            "PORT": sys.argv[1],
        }
    },
    SESSION_ENGINE="django.contrib.sessions.backends.db",
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"],
)
django.setup()

from django.contrib.auth import HASH_SESSION_KEY, authenticate  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils.crypto import constant_time_compare  # noqa: E402
from shop.models import Order, Tag  # noqa: E402


def flow(login: bool) -> list[Any]:
    out: list[Any] = []
    user = User.objects.create_user("ada", "ada@example.com", "correct horse battery")
    out.append(["user", user.username, User.objects.get(username="ada").email])
    if login:
        # what django.contrib.auth.login does: the password checked against the stored
        # hash, an HMAC of that hash kept in the session
        user = authenticate(username="ada", password="correct horse battery")
        out.append(["login", user is not None])
        user = user or User.objects.get(username="ada")
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    loaded = SessionStore(session_key=session.session_key).load()
    out.append(["session", loaded.get("_auth_user_id") == str(user.pk)])
    if login:
        # what django.contrib.auth.get_user does on the next request: the user read back,
        # the session's hash checked against that user's (a mismatch logs them out)
        again = User.objects.get(pk=loaded["_auth_user_id"])
        same = constant_time_compare(loaded[HASH_SESSION_KEY], again.get_session_auth_hash())
        out.append(["still logged in", same])
    book = Order.objects.create(owner=user, item="book", data={"qty": 1})
    Order.objects.create(owner=user, item="pen", data={"qty": 2})
    got = Order.objects.get(pk=book.pk)
    out.append(["order", got.item, got.data, got.created_at is not None])
    mine = Order.objects.filter(owner=user).select_related("owner").order_by("item")
    out.append(["orders", [(o.item, o.owner.username) for o in mine]])
    with transaction.atomic():
        Order.objects.filter(pk=book.pk).update(status="paid")
        with transaction.atomic():
            tag, created = Tag.objects.get_or_create(name="gift")
        out.append(["tag", tag.name, created])
    out.append(["paid", Order.objects.get(pk=book.pk).status])
    out.append(["qty 2", list(Order.objects.filter(data__qty=2).values_list("item", flat=True))])
    out.append(["deleted", Order.objects.filter(pk=book.pk).delete()[0]])
    out.append(["left", Order.objects.filter(owner=user).count()])
    return out


def existing() -> list[Any]:
    user = authenticate(username="grace", password="correct horse battery")
    out: list[Any] = [["login", user is not None]]
    if user is not None:
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        loaded = SessionStore(session_key=session.session_key).load()
        again = User.objects.get(pk=loaded["_auth_user_id"])
        same = constant_time_compare(loaded[HASH_SESSION_KEY], again.get_session_auth_hash())
        out.append(["still logged in", same])
    return out


if __name__ == "__main__":
    if sys.argv[2] == "migrate":
        call_command("migrate", verbosity=0)  # auth, contenttypes, sessions
        with connection.schema_editor() as editor:  # the shop has no migrations
            editor.create_model(Tag)
            editor.create_model(Order)
        User.objects.create_user("grace", "grace@example.com", "correct horse battery")
    elif sys.argv[2] == "existing":
        print(json.dumps(existing()))
    else:
        print(json.dumps(flow(sys.argv[2] == "login")))
