"""Bottle: its compiled-template cache lives in the ``bottle`` module, which stays."""

from __future__ import annotations

import sys

from . import Integration

__all__ = ["BottleIntegration", "serves"]


def serves(app: object) -> bool:
    """Whether the application is a Bottle application."""
    return isinstance(app, sys.modules["bottle"].Bottle)


class BottleIntegration(Integration):
    """Empty ``bottle.TEMPLATES`` before each reload, so templates are read again."""

    name = "Bottle"

    def before_import(self) -> None:
        sys.modules["bottle"].TEMPLATES.clear()
