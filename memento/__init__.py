"""Reload a WSGI application's code inside the running process."""

from __future__ import annotations

from .assassin import Assassin
from .base import ReloadInfo, ReloadingMiddleware, Stats
from .integrations import RestartNeeded
from .mori import Mori
from .resolver import resolve

__version__ = "1.1.0"

__all__ = [
    "Assassin",
    "Mori",
    "ReloadInfo",
    "ReloadingMiddleware",
    "RestartNeeded",
    "Stats",
    "__version__",
    "resolve",
]
