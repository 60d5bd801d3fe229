"""With the file watcher, a reload runs as soon as changes settle, before any request."""

from __future__ import annotations

import threading

import pytest
from helpers import APP, edit, wait_until
from webtest import TestApp

import memento
from memento.background import Worker

pytest.importorskip("watchfiles")

SLOW = '''\
import time
time.sleep(%r)
''' + APP


@pytest.fixture
def watched(make_package):
    made = []

    def make(files, **options):
        pkg = make_package("shop", {"__init__.py": "", **files})
        middleware = memento.Mori("shop.wsgi:app", events=True, **options)
        made.append(middleware)
        return pkg, middleware

    yield make
    for middleware in made:
        middleware.close()


def _reloader_threads():
    return [t for t in threading.enumerate() if t.name == "memento-reloader"]


def test_edit_is_reloaded_without_a_request(watched):
    pkg, middleware = watched({"wsgi.py": APP % "v1"})
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "v1"
    edit(pkg / "wsgi.py", APP % "v2")
    wait_until(lambda: middleware.stats.reloads == 1, what="a reload with no request")
    assert middleware.stats.generation == 2
    assert app.get("/").text == "v2"
    assert middleware.stats.reloads == 1


def test_request_during_a_background_reload_waits_for_the_new_code(watched):
    pkg, middleware = watched({"wsgi.py": APP % "v1"})
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "v1"
    started = threading.Event()
    middleware.before_reload(lambda info: started.set())
    edit(pkg / "wsgi.py", SLOW % (0.5, "v2"))
    wait_until(started.is_set, what="the background reload to start")
    assert app.get("/").text == "v2"
    assert middleware.stats.reloads == 1


def test_failed_background_reload_shows_the_page_on_the_next_request(watched):
    pkg, middleware = watched({"wsgi.py": APP % "v1"})
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "v1"
    edit(pkg / "wsgi.py", "def app(:\n")
    wait_until(lambda: middleware.stats.failures == 1, what="the background reload to fail")
    app.get("/", status=500).mustcontain("SyntaxError")
    edit(pkg / "wsgi.py", APP % "v3")
    wait_until(lambda: middleware.stats.reloads == 1, what="the fixed code to load")
    assert app.get("/").text == "v3"


def test_response_left_open_by_the_client_does_not_hold_the_reload(watched, caplog):
    # Test clients such as werkzeug's never close what they return.
    pkg, middleware = watched({"wsgi.py": APP % "v1"}, drain_timeout=60)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": None}
    middleware(environ, lambda status, headers: None)  # never closed
    edit(pkg / "wsgi.py", APP % "v2")
    wait_until(lambda: middleware._pending, what="the reloader to see the edit")
    assert b"".join(middleware(dict(environ), lambda status, headers: None)) == b"v2"
    assert "still open" not in caplog.text


def test_close_stops_the_reloader(watched):
    pkg, middleware = watched({"wsgi.py": APP % "v1"})
    app = TestApp(middleware, lint=True)
    app.get("/")
    edit(pkg / "wsgi.py", APP % "v2")
    wait_until(lambda: middleware.stats.reloads == 1, what="a reload with no request")
    assert _reloader_threads()
    middleware.close()
    assert not _reloader_threads()
    edit(pkg / "wsgi.py", APP % "v3")
    assert app.get("/").text == "v2"  # turned off: a pass-through


def test_polling_waits_for_a_request(make_package):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    with memento.Mori("shop.wsgi:app", events=False, interval=0) as middleware:
        app = TestApp(middleware, lint=True)
        app.get("/")
        edit(pkg / "wsgi.py", APP % "v2")
        assert middleware.stats.reloads == 0
        assert not _reloader_threads()
        assert app.get("/").text == "v2"


def test_worker_runs_once_more_for_wakes_during_a_task():
    runs = []
    gate = threading.Event()

    def task():
        runs.append(1)
        gate.wait(5)

    worker = Worker(task, "memento-test-worker")
    worker.wake()
    wait_until(lambda: runs, what="the first run")
    worker.wake()
    worker.wake()
    gate.set()
    wait_until(lambda: len(runs) == 2, what="one more run")
    worker.stop()
    assert not worker.alive
    assert len(runs) == 2


def test_worker_survives_a_failing_task(caplog):
    calls = []

    def task():
        calls.append(1)
        raise RuntimeError("boom")

    worker = Worker(task, "memento-test-worker")
    worker.wake()
    wait_until(lambda: calls, what="the task")
    wait_until(lambda: "boom" in caplog.text, what="the failure logged")
    worker.wake()
    wait_until(lambda: len(calls) == 2, what="the task again")
    worker.stop()
