"""The app's configuration."""

from __future__ import annotations

from django.apps import AppConfig


class MementoConfig(AppConfig):
    """``runserver`` through memento; nothing else, no models."""

    name = "memento.contrib.django"
    label = "memento"
    verbose_name = "memento"
