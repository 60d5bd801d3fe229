"""Reload a WSGI application's code inside the running process."""

from __future__ import annotations

from .assassin import Assassin
from .base import ReloadInfo, ReloadingMiddleware, Stats
from .mori import Mori
from .resolver import resolve

__version__ = "1.0.0"

__all__ = [
    "Assassin",
    "Mori",
    "ReloadInfo",
    "ReloadingMiddleware",
    "Stats",
    "__version__",
    "resolve",
]
