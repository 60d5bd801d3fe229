"""The WSGI entry point: ``plain_app.wsgi:app``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

from . import pages


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    page = pages.PAGES.get(environ.get("PATH_INFO") or "/")
    status, text = ("200 OK", page()) if page else ("404 Not Found", "not found")
    body = text.encode("utf-8")
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
