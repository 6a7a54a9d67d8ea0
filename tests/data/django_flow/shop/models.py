"""A small shop as a Django service models it: a uuid4 key, a creation time, an owner."""

import uuid

from django.conf import settings
from django.db import models


class Order(models.Model):  # type: ignore[misc]  # django has no stubs here
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    item = models.CharField(max_length=100)
    data = models.JSONField(default=dict)
    status = models.CharField(max_length=20, default="new")


class Tag(models.Model):  # type: ignore[misc]
    name = models.CharField(max_length=50, unique=True)
