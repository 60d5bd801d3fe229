"""One function per page; each returns the page's text."""

from __future__ import annotations

from .settings import SETTINGS


def home() -> str:
    return f"Welcome to {SETTINGS['site']}"


def about() -> str:
    return "Made without a framework."


PAGES = {"/": home, "/about": about}
