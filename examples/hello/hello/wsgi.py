"""The WSGI entry point: ``memento --app-dir examples/hello hello.wsgi:app``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

from . import views


def app(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = views.home().encode("utf-8")
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
