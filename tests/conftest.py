from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import webtest.http
from helpers import wait_until, write_package

from memento.modules import is_protected


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Write a throwaway package into tmp_path; forget what it imported afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)

    def make(name: str, files: dict[str, str]) -> Path:
        return write_package(tmp_path, name, files)

    yield make
    # Installed packages a test imported first stay: importing them twice
    # breaks some (zope.interface, SQLAlchemy's compiled parts).
    for modname in set(sys.modules) - before:
        if not is_protected(modname, sys.modules[modname]):
            del sys.modules[modname]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server() -> Iterator[Callable[..., str]]:
    """Serve an app on 127.0.0.1 with waitress or threaded wsgiref; returns its URL.

    Every server started is stopped at the end of the test.
    """
    stops: list[Callable[[], Any]] = []

    def start(app: Any, server: str = "waitress", threads: int = 8) -> str:
        if server == "waitress":
            srv = webtest.http.StopableWSGIServer.create(
                app, host="127.0.0.1", port=free_port(), threads=threads
            )
            stops.append(srv.shutdown)
            wait_until(lambda: _accepts(srv.adj.port), what="waitress to listen")
            return srv.application_url
        from wsgiref.simple_server import make_server

        from memento.cli import QuietHandler, ThreadingWSGIServer

        httpd = make_server(
            "127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
        )
        thread = threading.Thread(target=httpd.serve_forever, name="wsgiref", daemon=True)
        thread.start()

        def stop() -> None:
            httpd.shutdown()
            httpd.server_close()
            thread.join(5)

        stops.append(stop)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield start
    for stop in reversed(stops):
        stop()


@pytest.fixture(autouse=True)
def close_middlewares(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every middleware a test made, so no watcher thread outlives it."""
    from memento.base import ReloadingMiddleware

    made: list[ReloadingMiddleware] = []
    original = ReloadingMiddleware.__init__

    def init(self: ReloadingMiddleware, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ReloadingMiddleware, "__init__", init)
    yield
    for middleware in made:
        middleware.close()
