"""memento under real gunicorn: ``--preload``, two forked sync workers.

Each worker answers ``"<version> <pid>"``; a test makes requests (one
connection each) until both workers have answered, so it knows every process
serves the code it expects.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from helpers import clean_env, edit, wait_until

if sys.platform == "win32":
    pytest.skip("gunicorn does not run on Windows", allow_module_level=True)
pytest.importorskip("gunicorn")

from gunicorn.config import KNOWN_SETTINGS  # noqa: E402

#: The application; every version string has its own length, so that no
#: edit can be mistaken for cached bytecode of the same size.
SHOP = """\
import os

VERSION = %r


def app(environ, start_response):
    body = f"{VERSION} {os.getpid()}".encode()
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
"""

STOP_TIMEOUT = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def get(port: int) -> tuple[str, str]:
    """One request on its own connection: the worker's (version, pid)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200, body
    version, pid = body.split()
    return version, pid


def answers_from_both_workers(port: int, version: str, timeout: float = 20) -> set[str]:
    """Request until two workers have answered ``version``; every version seen."""
    pids: set[str] = set()
    seen: set[str] = set()

    def both() -> bool:
        served, pid = get(port)
        seen.add(served)
        if served == version:
            pids.add(pid)
        return len(pids) == 2

    try:
        wait_until(both, timeout, what=f"two workers to serve {version!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; versions served meanwhile: {sorted(seen)}") from None
    return seen


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """Start ``gunicorn --preload -w 2`` on ``serve:app`` in tmp_path; returns its port.

    The server gets SIGTERM at the end of the test (SIGKILL if it is still
    running after STOP_TIMEOUT seconds); its output is printed, which pytest
    shows when the test failed.
    """
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(serve: str) -> int:
        (tmp_path / "serve.py").write_text(textwrap.dedent(serve), encoding="utf-8")
        port = free_port()
        command = [
            sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
            "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", "serve:app",
        ]  # fmt: skip
        if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
            command.insert(-1, "--no-control-socket")  # else it goes to ~/.gunicorn
        log = tmp_path / f"gunicorn-{port}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                command, cwd=tmp_path, env=clean_env(), stdout=output, stderr=subprocess.STDOUT
            )
        started.append((process, log))
        wait_until(
            lambda: process.poll() is not None or accepts(port), 30, what="gunicorn to listen"
        )
        assert process.poll() is None, log.read_text()
        return port

    yield start
    for process, log in started:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
        print(log.read_text(errors="replace"))


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    pkg = tmp_path / "shop"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "wsgi.py").write_text(SHOP % "v1")
    return pkg


@pytest.mark.parametrize(
    "preload",
    [
        # the application, the snapshot and the watcher thread start in the
        # master before the fork; each worker restarts the watcher lazily
        "app.resolve()",
        # each worker imports the application on its first request
        "",
    ],
    ids=["app-in-master", "app-in-workers"],
)
def test_every_worker_serves_the_edit(gunicorn, shop, preload):
    port = gunicorn(
        f"""\
        import memento

        app = memento.Mori("shop.wsgi:app", interval=0)
        {preload}
        """
    )
    answers_from_both_workers(port, "v1")
    edit(shop / "wsgi.py", SHOP % "v2-edited")
    answers_from_both_workers(port, "v2-edited")


def test_touching_the_trigger_file_reloads_every_worker(gunicorn, shop, tmp_path):
    trigger = tmp_path / "reload.trigger"
    trigger.write_text("")
    port = gunicorn(
        f"""\
        import memento

        app = memento.Mori("shop.wsgi:app", reload_on="manual", watch=[{str(trigger)!r}])
        app.resolve()
        """
    )
    answers_from_both_workers(port, "v1")
    edit(shop / "wsgi.py", SHOP % "v2-edited")
    # reload_on="manual" never looks at the source files
    assert answers_from_both_workers(port, "v1") == {"v1"}
    stat = trigger.stat()
    os.utime(trigger, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    answers_from_both_workers(port, "v2-edited")
