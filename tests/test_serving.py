"""Serving safely on real multi-threaded servers: one version per response."""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import edit, fetch, wait_until

import memento

MODULES = ("alpha", "beta", "gamma", "delta")

# Each import of shop.token draws a new token; every other module copies it
# at its own import. A response reads all of them through sys.modules when it
# starts and again when it ends: a torn response shows two tokens, a
# half-forgotten module set a KeyError (a 500).
TOKEN = "import uuid\nTOKEN = uuid.uuid4().hex\n# edit {n}\n"
MODULE = "from shop.token import TOKEN\n# edit {n}\n"
WSGI = """\
import sys, time

NAMES = ["shop.token"] + ["shop." + name for name in {modules!r}]
# edit {n}

def tokens():
    return {{sys.modules[name].TOKEN for name in NAMES}}

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    def body():
        yield ("start " + " ".join(sorted(tokens())) + "\\n").encode()
        time.sleep(0.005)
        yield ("end " + " ".join(sorted(tokens())) + "\\n").encode()
    return body()
"""


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_shop(pkg: Path, n: int) -> None:
    write_atomically(pkg / "token.py", TOKEN.format(n=n))
    for name in MODULES:
        write_atomically(pkg / f"{name}.py", MODULE.format(n=n))
    write_atomically(
        pkg / "wsgi.py",
        "".join(f"import shop.{name}\n" for name in MODULES) + WSGI.format(modules=MODULES, n=n),
    )


@pytest.fixture
def shop(make_package):
    pkg = make_package("shop", {"__init__.py": ""})
    write_shop(pkg, 0)
    return pkg


def hammer(url: str, seconds: float, threads: int = 4) -> Counter:
    """Request ``url`` from several threads for a while; count what came back."""
    outcome: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    parts = urlsplit(url)

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            while time.monotonic() < deadline:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read().decode()
                with lock:
                    outcome[classify(response.status, body)] += 1
        except OSError as exc:
            with lock:
                outcome[f"error {exc!r}"] += 1
        finally:
            conn.close()

    workers = [threading.Thread(target=client, name=f"client-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 30)
    return outcome


def classify(status: int, body: str) -> str:
    if status != 200:
        return f"status {status}"
    start, end = (line.split()[1:] for line in body.splitlines())
    if len(start) == 1 and start == end:
        return "one version"
    return "torn"


@pytest.mark.parametrize("events", [False, True], ids=["poll", "watch"])
def test_edits_every_200ms_never_tear_a_response(shop, live_server, events):
    if events:
        pytest.importorskip("watchfiles")
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=events)
    url = live_server(middleware, threads=8)
    assert fetch(url).startswith("start")
    stop = threading.Event()

    def editor() -> None:
        n = 0
        while not stop.wait(0.2):
            n += 1
            write_shop(shop, n)

    thread = threading.Thread(target=editor, name="editor")
    thread.start()
    try:
        outcome = hammer(url, seconds=3)
    finally:
        stop.set()
        thread.join(5)
    assert set(outcome) == {"one version"}, outcome
    assert middleware.stats.reloads >= 3
    assert middleware.stats.failures == 0


def test_reloads_driven_by_reload_serve_exactly_one_version(shop, live_server):
    middleware = memento.Mori("shop.wsgi:app", reload_on="manual")
    url = live_server(middleware, threads=8)
    stop = threading.Event()

    def reloader() -> None:
        while not stop.wait(0.03):
            middleware.reload()

    thread = threading.Thread(target=reloader, name="reloader")
    thread.start()
    try:
        outcome = hammer(url, seconds=2)
    finally:
        stop.set()
        thread.join(5)
    assert set(outcome) == {"one version"}, outcome
    assert middleware.stats.reloads >= 10


SLOW = """\
import sys, time

VERSION = {version!r}

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    def body():
        for _ in range(5):
            yield (sys.modules["shop.wsgi"].VERSION + "\\n").encode()
            time.sleep(0.1)
    return body()
"""


@pytest.mark.parametrize("server", ["waitress", "wsgiref"])
def test_slow_stream_spanning_an_edit_finishes_with_the_old_code(make_package, live_server,
                                                                 server):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": SLOW.format(version="old")})
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False)
    url = urlsplit(live_server(middleware, server=server))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        first = response.readline()
        edit(pkg / "wsgi.py", SLOW.format(version="new"))
        started = time.monotonic()
        second = threading.Thread(target=lambda: results.append(fetch(url.geturl())))
        results: list[str] = []
        second.start()
        rest = response.read()
    finally:
        conn.close()
    second.join(10)
    assert first + rest == b"old\n" * 5
    assert results == ["new\n" * 5]
    assert time.monotonic() - started < 5


def test_a_response_that_never_ends_does_not_block_reloads_forever(make_package, live_server,
                                                                   caplog):
    pkg = make_package(
        "shop",
        {"__init__.py": "", "wsgi.py": SLOW.format(version="old").replace("range(5)", "range(60)")},
    )
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False, drain_timeout=0.3)
    url = urlsplit(live_server(middleware))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.readline() == b"old\n"
        edit(pkg / "wsgi.py", SLOW.format(version="new"))
        assert fetch(url.geturl()).startswith("new")
    finally:
        conn.close()
    assert "still open" in caplog.text


def test_file_wrapper_responses_pass_through_waitress(make_package, live_server, tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 200_000)
    make_package(
        "shop",
        {"__init__.py": "", "wsgi.py": f"""\
            def app(environ, start_response):
                start_response("200 OK", [("Content-Type", "application/octet-stream")])
                return environ["wsgi.file_wrapper"](open({str(data)!r}, "rb"), 8192)
        """},
    )
    middleware = memento.Mori("shop.wsgi:app", interval=0)
    url = live_server(middleware)
    for _ in range(3):
        assert fetch(url) == "x" * 200_000
    wait_until(lambda: middleware._gate.open_responses == 0, what="the responses to count out")
