"""Live refresh: what is injected into, the endpoint, real servers, a real browser."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chromium import Browser, require_browser
from helpers import edit, fetch, wait_until
from webtest import TestApp

import memento
from memento import live
from memento.paste import mori_app

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}
REMOTE = {"REMOTE_ADDR": "192.0.2.7"}
PAGE = "<!DOCTYPE html><html><head><title>t</title></head><body><p>%s</p></body></html>"

#: A WSGI module whose page says "%s"; it answers HTML with a Content-Length.
HTML_APP = '''\
def app(environ, start_response):
    body = (%r %% %r).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def html_app(text: str) -> str:
    return HTML_APP % (PAGE, text)


def plain(body: bytes, headers: list[tuple[str, str]], status: str = "200 OK") -> Any:
    """A WSGI application answering ``body`` as a list."""

    def app(environ: dict, start_response: Any) -> list[bytes]:
        start_response(status, headers)
        return [body] if body else []

    return app


@pytest.fixture
def wrap(make_package: Any) -> Iterator[Any]:
    """``wrap(app, **options)``: a live Mori around the WSGI callable ``app``, in WebTest."""
    calls: list[Any] = []

    def make(app: Any, clients: Any = True, **options: Any) -> TestApp:
        import sys

        name = f"livepkg{len(calls)}"
        make_package(name, {"__init__.py": "", "wsgi.py": "app = None\n"})
        module = __import__(f"{name}.wsgi", fromlist=["app"])
        module.app = app
        middleware = memento.Mori(f"{name}.wsgi:app", live=clients, reload_on="manual", **options)
        middleware.previous_modules = frozenset(sys.modules)  # never forget the stub
        calls.append(middleware)
        return TestApp(middleware, lint=True, extra_environ=LOCAL)

    yield make


def call(middleware: Any, **environ: Any) -> tuple[list[Any], bytes]:
    """Call ``middleware`` directly (no lint: some cases are odd on purpose);
    returns the headers it sent and the body."""
    environ = {**LOCAL, "REQUEST_METHOD": "GET", "PATH_INFO": "/", "SCRIPT_NAME": "", **environ}
    sent: list[Any] = []
    result = middleware(environ, lambda status, headers, exc_info=None: sent.append(headers))
    try:
        return sent, b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()


def page_headers(length: int | None = None) -> list[tuple[str, str]]:
    headers = [("Content-Type", "text/html; charset=utf-8")]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return headers


# -- what is injected into ----------------------------------------------------


def test_html_page_gets_the_script_before_body_and_its_length(wrap):
    body = (PAGE % "hello").encode()
    response = wrap(plain(body, page_headers(len(body)))).get("/")
    text = response.text
    assert text.index("data-memento-live") < text.index("</body>")
    assert text.startswith(body.decode().split("</body>")[0])
    assert text.endswith("</body></html>")
    assert int(response.headers["Content-Length"]) == len(response.body)
    assert response.headers["Cache-Control"] == "no-store"
    assert 'data-memento-live="/__memento__/live"' in text


def test_list_without_content_length_is_injected(wrap):
    body = (PAGE % "hello").encode()
    response = wrap(plain(body, page_headers())).get("/")
    assert "data-memento-token" in response.text
    assert response.headers.get("Content-Length", str(len(response.body))) == str(
        len(response.body)
    )


def test_endpoint_follows_script_name(wrap):
    body = (PAGE % "hello").encode()
    response = wrap(plain(body, page_headers())).get("/", extra_environ={"SCRIPT_NAME": "/shop"})
    assert 'data-memento-live="/shop/__memento__/live"' in response.text


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("Content-Type", "text/plain")], "200 OK"),
        ([("Content-Type", "application/json")], "200 OK"),
        ([("Content-Type", "text/html"), ("Content-Encoding", "br")], "200 OK"),
        ([("Content-Type", "text/html")], "206 Partial Content"),
    ],
)
def test_other_responses_pass_as_they_are(wrap, headers, status):
    body = (PAGE % "x").encode()
    sent, answered = call(wrap(plain(body, headers, status)).app)
    assert answered == body
    assert sent == [headers]


@pytest.mark.parametrize("status", ["304 Not Modified", "204 No Content", "100 Continue"])
def test_no_content_responses_pass(wrap, status):
    # called directly: WebTest's lint rightly warns about a type on a 304
    sent, body = call(wrap(plain(b"", [("Content-Type", "text/html")], status)).app)
    assert (sent, body) == ([[("Content-Type", "text/html")]], b"")


def test_head_and_post_pass(wrap):
    body = (PAGE % "x").encode()
    app = wrap(plain(body, page_headers(len(body))))
    assert app.head("/").headers["Content-Length"] == str(len(body))
    assert app.post("/").body == body


def test_fragment_passes_unless_the_browser_shows_it_as_a_page(wrap):
    body = b"<p>a fragment</p>"
    app = wrap(plain(body, page_headers(len(body))))
    assert app.get("/").body == body
    shown = app.get("/", headers={"Sec-Fetch-Dest": "document"})
    assert shown.body.startswith(body) and b"data-memento-live" in shown.body
    assert app.get("/", headers={"Sec-Fetch-Dest": "empty"}).body == body


def test_streamed_response_of_unknown_length_is_not_buffered(wrap):
    steps: list[str] = []

    def app(environ, start_response):
        start_response("200 OK", page_headers())

        def body():
            steps.append("first")
            yield b"<html><body>first"
            steps.append("second")
            yield b"second</body></html>"

        return body()

    middleware = wrap(app).app
    environ = {**LOCAL, "REQUEST_METHOD": "GET", "PATH_INFO": "/", "SCRIPT_NAME": ""}
    started: list[Any] = []
    result = middleware(environ, lambda status, headers, exc_info=None: started.append(headers))
    chunks = iter(result)
    assert next(chunks) == b"<html><body>first"
    assert steps == ["first"] and started  # headers sent, the rest not yet made
    assert b"".join(chunks) == b"second</body></html>"
    result.close()


def test_start_response_called_while_iterating_passes(wrap):
    def app(environ, start_response):
        start_response("200 OK", page_headers())
        yield (PAGE % "lazy").encode()

    assert wrap(app).get("/").body == (PAGE % "lazy").encode()


def test_write_callable_passes(wrap):
    body = (PAGE % "written").encode()

    def app(environ, start_response):
        write = start_response("200 OK", page_headers(len(body)))
        write(body)
        return []

    assert wrap(app).get("/").body == body


def test_file_wrapper_passes(wrap):
    class FileWrapper:
        def __init__(self, filelike, block_size=8192):
            self.filelike = filelike

        def __iter__(self):
            return iter([self.filelike])

    body = (PAGE % "file").encode()

    def app(environ, start_response):
        start_response("200 OK", page_headers(len(body)))
        return environ["wsgi.file_wrapper"](body)

    middleware = wrap(app).app
    environ = {**LOCAL, "REQUEST_METHOD": "GET", "PATH_INFO": "/", "SCRIPT_NAME": ""}
    environ["wsgi.file_wrapper"] = FileWrapper
    sent: list[Any] = []
    result = middleware(environ, lambda status, headers, exc_info=None: sent.append(headers))
    assert type(result) is FileWrapper
    assert sent == [page_headers(len(body))]


def test_application_iterable_is_closed_once_read(wrap):
    closed: list[bool] = []

    class Body:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def __iter__(self):
            return iter([self.data])

        def close(self) -> None:
            closed.append(True)

    body = (PAGE % "closing").encode()

    def app(environ, start_response):
        start_response("200 OK", page_headers(len(body)))
        return Body(body)

    assert b"data-memento-live" in wrap(app).get("/").body
    assert closed == [True]


def test_remote_clients_get_nothing_unless_asked(wrap):
    body = (PAGE % "x").encode()
    app = wrap(plain(body, page_headers(len(body))))
    assert app.get("/", extra_environ=REMOTE).body == body
    # the endpoint is the application's path like any other for them
    assert app.get(live.PATH, extra_environ=REMOTE).body == body
    everyone = wrap(plain(body, page_headers(len(body))), clients="all")
    assert b"data-memento-live" in everyone.get("/", extra_environ=REMOTE).body


def test_live_is_off_by_default(make_package):
    pkg = make_package("offshop", {"__init__.py": "", "wsgi.py": html_app("v1")})
    assert pkg.is_dir()
    app = TestApp(memento.Mori("offshop.wsgi:app"), lint=True, extra_environ=LOCAL)
    assert b"data-memento-live" not in app.get("/").body
    assert memento.Mori("offshop.wsgi:app").options.live is False


@pytest.mark.parametrize(
    ("value", "read"),
    [(True, True), (False, False), ("all", "all"), ("ALL", "all"), ("yes", True), ("0", False)],
)
def test_live_option_values(make_package, value, read):
    make_package("optshop", {"__init__.py": "", "wsgi.py": html_app("v1")})
    assert memento.Mori("optshop.wsgi:app", live=value).options.live == read


@pytest.mark.parametrize("value", ["sometimes", 2, None])
def test_bad_live_value_is_refused(value):
    with pytest.raises(ValueError, match=r"live: expected a boolean or 'all'"):
        memento.Mori("optshop.wsgi:app", live=value)


def test_live_with_reload_on_request_is_refused():
    with pytest.raises(ValueError, match="live: needs reload_on"):
        memento.Mori("optshop.wsgi:app", live=True, reload_on="request")


def test_paste_key_live(make_package):
    make_package("pasteshop", {"__init__.py": "", "wsgi.py": html_app("v1")})
    assert mori_app({}, app="pasteshop.wsgi:app", live="all").options.live == "all"
    assert mori_app({}, app="pasteshop.wsgi:app", live="true").options.live is True
    with pytest.raises(ValueError, match="live"):
        mori_app({}, app="pasteshop.wsgi:app", live="maybe")


# -- the endpoint ---------------------------------------------------------------


def token_of(body: str) -> str:
    return body.split('data-memento-token="')[1].split('"')[0]


def poll(app: TestApp, token: str) -> dict[str, Any]:
    return app.get(live.PATH, {"token": token}).json


def test_endpoint_answers_at_once_for_another_generation(make_package):
    pkg = make_package("epshop", {"__init__.py": "", "wsgi.py": html_app("v1")})
    app = TestApp(memento.Mori("epshop.wsgi:app", live=True, interval=0), extra_environ=LOCAL)
    token = token_of(app.get("/").text)
    assert poll(app, "old")["action"] == "reload"
    edit(pkg / "wsgi.py", html_app("v2"))
    # the poll itself looks for the change and reloads: no other request needed
    answer = poll(app, token)
    assert answer["action"] == "reload" and answer["token"] != token
    assert token_of(app.get("/").text) == answer["token"]


def test_held_poll_ends_after_its_hold(make_package, monkeypatch):
    make_package("holdshop", {"__init__.py": "", "wsgi.py": html_app("v1")})
    monkeypatch.setattr(live, "HOLD", 0.3)
    middleware = memento.Mori("holdshop.wsgi:app", live=True)
    app = TestApp(middleware, extra_environ=LOCAL)
    token = token_of(app.get("/").text)
    started = time.monotonic()
    answer = poll(app, token)
    assert 0.25 < time.monotonic() - started < 3
    assert answer == {"action": "none", "token": token, "retry": 0}


def test_failure_and_fix_are_both_told(make_package):
    pkg = make_package("failshop", {"__init__.py": "", "wsgi.py": html_app("v1")})
    app = TestApp(memento.Mori("failshop.wsgi:app", live=True, interval=0), extra_environ=LOCAL)
    token = token_of(app.get("/").text)
    edit(pkg / "wsgi.py", "def app(:\n")
    broken = poll(app, token)
    assert broken["action"] == "reload"
    page = app.get("/", headers={"Accept": "text/html"}, status=500)
    assert token_of(page.text) == broken["token"]  # the error page polls the same way
    assert page.text.index("mementoLive") < page.text.index("data-memento-live")
    edit(pkg / "wsgi.py", html_app("fixed"))
    assert poll(app, broken["token"])["action"] == "reload"
    assert "fixed" in app.get("/").text


def test_stylesheet_change_swaps_stylesheets(make_package, tmp_path):
    pkg = make_package("cssshop", {"__init__.py": "", "wsgi.py": html_app("v1")})
    css = tmp_path / "static" / "site.css"
    css.parent.mkdir()
    css.write_text("p { color: red }\n")
    middleware = memento.Mori("cssshop.wsgi:app", live=True, interval=0, watch=[str(css.parent)])
    app = TestApp(middleware, extra_environ=LOCAL)
    token = token_of(app.get("/").text)
    edit(css, "p { color: blue }\n")
    answer = poll(app, token)
    assert answer["action"] == "css", middleware.stats
    edit(pkg / "wsgi.py", html_app("v2"))
    assert poll(app, answer["token"])["action"] == "reload"


def test_polls_beyond_the_limit_are_answered_at_once(make_package, monkeypatch):
    make_package("capshop", {"__init__.py": "", "wsgi.py": html_app("v1")})
    monkeypatch.setattr(live, "HOLD", 5.0)
    middleware = memento.Mori("capshop.wsgi:app", live=True)
    app = TestApp(middleware, extra_environ=LOCAL)
    token = token_of(app.get("/").text)
    threads = [threading.Thread(target=poll, args=(app, token)) for _ in range(live.MAX_HELD)]
    for thread in threads:
        thread.start()
    assert middleware._live is not None
    wait_until(lambda: middleware._live._held == live.MAX_HELD, what="the polls to be held")
    started = time.monotonic()
    answer = poll(app, token)
    assert time.monotonic() - started < 1
    assert answer == {"action": "none", "token": token, "retry": live.RETRY}
    live.release_all()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)


# -- on a real server ----------------------------------------------------------


def get_json(url: str, timeout: float = 10) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return dict(json.load(response))


class Tabs:
    """Live polls held open in threads, as open tabs hold them."""

    def __init__(self, url: str, token: str, count: int) -> None:
        self.answers: list[dict[str, Any]] = []
        self.threads = [
            threading.Thread(target=self._poll, args=(f"{url}?token={token}",), daemon=True)
            for _ in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _poll(self, url: str) -> None:
        self.answers.append(get_json(url, timeout=30))

    def join(self) -> None:
        for thread in self.threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in self.threads)


@pytest.mark.parametrize("server", ["waitress", "wsgiref"])
def test_held_polls_never_delay_a_reload(make_package, live_server, server):
    pkg = make_package("gateshop", {"__init__.py": "", "wsgi.py": html_app("v1")})
    middleware = memento.Mori("gateshop.wsgi:app", live=True, events=False, interval=0)
    url = live_server(middleware, server=server)
    token = token_of(fetch(url))
    tabs = Tabs(url + live.PATH.lstrip("/"), token, 2)
    assert middleware._live is not None
    wait_until(lambda: middleware._live._held == 2, what="the polls to be held")
    assert middleware._gate.open_responses == 0  # not counted as open responses
    edit(pkg / "wsgi.py", html_app("v2"))
    started = time.monotonic()
    assert "v2" in fetch(url)
    assert time.monotonic() - started < 2  # drain_timeout is 10 s: nothing waited
    tabs.join()
    assert [answer["action"] for answer in tabs.answers] == ["reload", "reload"]


def test_three_tabs_leave_waitress_threads_for_requests(make_package, live_server):
    make_package("tabshop", {"__init__.py": "", "wsgi.py": html_app("v1")})
    middleware = memento.Mori("tabshop.wsgi:app", live=True)
    url = live_server(middleware, server="waitress", threads=4)
    token = token_of(fetch(url))
    tabs = Tabs(url + live.PATH.lstrip("/"), token, 3)
    assert middleware._live is not None
    wait_until(lambda: middleware._live._held == 3, what="three tabs' polls to be held")
    for _ in range(5):
        started = time.monotonic()
        assert "v1" in fetch(url)
        assert time.monotonic() - started < 1
    # a fourth tab is answered at once and asks again later: threads stay free
    started = time.monotonic()
    assert get_json(url + live.PATH.lstrip("/") + f"?token={token}")["retry"] == live.RETRY
    assert time.monotonic() - started < 1
    live.release_all()
    tabs.join()


# -- in a browser ------------------------------------------------------------


def edits_show_by_themselves(
    make_package: Any, live_server: Any, profile: Path, edits: list[tuple[str, str]]
) -> None:
    """Serve a live page in waitress, open it, then make each edit ``(source, text)``:
    the page shows ``text`` by itself."""
    browser_path = require_browser()
    name = f"browsershop{len(edits)}"
    pkg = make_package(name, {"__init__.py": "", "wsgi.py": html_app("first")})
    url = live_server(memento.Mori(f"{name}.wsgi:app", live=True), server="waitress")
    with Browser(browser_path, profile) as browser:
        browser.navigate(url)
        wait_until(lambda: "first" in browser.text(), 30, "the first page")
        for source, text in edits:
            time.sleep(0.3)  # the new page is back to waiting
            edit(pkg / "wsgi.py", source)
            wait_until(lambda t=text: t in browser.text(), 10, repr(text))


def test_page_shows_an_edit_by_itself(make_package, live_server, tmp_path):
    edits = [(html_app(f"edit {number}"), f"edit {number}") for number in range(1, 4)]
    edits_show_by_themselves(make_package, live_server, tmp_path / "profile", edits)


def test_error_page_and_its_fix_show_by_themselves(make_package, live_server, tmp_path):
    edits = [("def app(:\n", "SyntaxError"), (html_app("fixed"), "fixed")]
    edits_show_by_themselves(make_package, live_server, tmp_path / "profile", edits)


def test_script_is_package_data():
    assert "mementoLive" in live.script()
    assert Path(live.__file__).with_name("templates").joinpath("live.js").is_file()
