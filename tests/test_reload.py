"""Reload behaviour both policies share: changes, hooks, stats, unload, close."""

from __future__ import annotations

import sys
import threading

import pytest
from helpers import APP, edit, wait_until
from webtest import TestApp

import memento

POLICIES = {
    "mori": lambda statement, **kw: memento.Mori(statement, **kw),
    "assassin": lambda statement, **kw: memento.Assassin(statement, ["shop"], **kw),
}


@pytest.fixture(params=sorted(POLICIES))
def wrap(request):
    made = []

    def make(statement, **options):
        options.setdefault("interval", 0)
        options.setdefault("events", False)
        middleware = POLICIES[request.param](statement, **options)
        made.append(middleware)
        return middleware

    yield make
    for middleware in made:
        middleware.close()


ROUTER = """\
import importlib

def app(environ, start_response):
    name = environ["PATH_INFO"].strip("/") or "home"
    try:
        module = importlib.import_module("shop.pages." + name)
        status, body = "200 OK", module.TEXT
    except ImportError:
        status, body = "404 Not Found", "missing"
    start_response(status, [("Content-Type", "text/plain")])
    return [body.encode()]
"""


def test_new_module_is_found_after_a_reload(make_package, wrap):
    pkg = make_package(
        "shop", {"__init__.py": "", "pages/__init__.py": "", "pages/home.py": "TEXT = 'home'\n",
                 "wsgi.py": ROUTER},
    )
    app = TestApp(wrap("shop.wsgi:app"), lint=True)
    app.get("/about", status=404)
    edit(pkg / "pages" / "about.py", "TEXT = 'about'\n")
    edit(pkg / "pages" / "home.py", "TEXT = 'home2'\n")
    assert app.get("/about").text == "about"
    assert app.get("/").text == "home2"


def test_deleted_module_is_noticed(make_package, wrap):
    pkg = make_package(
        "shop", {"__init__.py": "", "pages/__init__.py": "", "pages/home.py": "TEXT = 'home'\n",
                 "pages/old.py": "TEXT = 'old'\n", "wsgi.py": ROUTER},
    )
    middleware = wrap("shop.wsgi:app")
    app = TestApp(middleware, lint=True)
    assert app.get("/old").text == "old"
    (pkg / "pages" / "old.py").unlink()
    app.get("/old", status=404)
    assert middleware.stats.reloads == 1


def test_module_that_becomes_a_package(make_package, wrap):
    pkg = make_package(
        "shop",
        {"__init__.py": "", "views.py": "TEXT = 'module'\n",
         "wsgi.py": "from shop import views\n" + APP.replace("%r.encode()", "views.TEXT.encode()")},
    )
    app = TestApp(wrap("shop.wsgi:app"), lint=True)
    assert app.get("/").text == "module"
    (pkg / "views.py").unlink()
    (pkg / "views").mkdir()
    edit(pkg / "views" / "__init__.py", "TEXT = 'package'\n")
    assert app.get("/").text == "package"


def test_watch_glob_triggers_a_reload(make_package, tmp_path, wrap):
    templates = tmp_path / "templates"
    (templates / "shop").mkdir(parents=True)
    (templates / "shop" / "page.html").write_text("<p>one</p>")
    make_package(
        "shop",
        {"__init__.py": "", "wsgi.py": f"""\
            import pathlib
            TEXT = pathlib.Path({str(templates / "shop" / "page.html")!r}).read_text()

            def app(environ, start_response):
                start_response("200 OK", [("Content-Type", "text/html")])
                return [TEXT.encode()]
        """},
    )
    middleware = wrap("shop.wsgi:app", watch=[str(templates / "**" / "*.html")])
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "<p>one</p>"
    edit(templates / "shop" / "page.html", "<p>two</p>")
    assert app.get("/").text == "<p>two</p>"
    (templates / "notes.txt").write_text("not a template")
    app.get("/")
    assert middleware.stats.reloads == 1


def test_watcher_delivers_changes(make_package, wrap):
    pytest.importorskip("watchfiles")
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    middleware = wrap("shop.wsgi:app", events=True)
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "v1"
    edit(pkg / "wsgi.py", APP % "v2")
    wait_until(lambda: app.get("/").text == "v2", what="the watcher to report the edit")
    assert middleware.stats.reloads == 1
    middleware.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("memento")]
    assert middleware.stats.generation == 2


def test_hooks_receive_reload_info_and_failing_hook_is_logged(make_package, wrap, caplog):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    middleware = wrap("shop.wsgi:app")
    seen = []

    @middleware.before_reload
    def broken(info):
        raise RuntimeError("hook broke")

    middleware.before_reload(lambda info: seen.append(("before", info)))
    middleware.after_reload(lambda info: seen.append(("after", info)))
    app = TestApp(middleware, lint=True)
    app.get("/")
    assert seen == []
    edit(pkg / "wsgi.py", APP % "v2")
    assert app.get("/").text == "v2"
    (_, before), (_, after) = seen
    assert [str(p) for p in before.changed] == [str(pkg / "wsgi.py")]
    assert "shop.wsgi" in after.forgotten
    assert after.error is None and after.duration > 0
    assert middleware.stats.last == after
    assert "hook broke" in caplog.text


def test_unload_hook_runs_before_forgetting(make_package, wrap, tmp_path):
    log = tmp_path / "unload.log"
    source = (
        "def __memento_unload__():\n"
        f"    with open({str(log)!r}, 'a') as f:\n"
        "        f.write('unloaded\\n')\n"
    )
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": source + APP % "v1"})
    app = TestApp(wrap("shop.wsgi:app"), lint=True)
    app.get("/")
    assert not log.exists()
    edit(pkg / "wsgi.py", source + APP % "v2")
    assert app.get("/").text == "v2"
    assert log.read_text() == "unloaded\n"


def test_failing_unload_hook_is_logged_and_reload_goes_on(make_package, wrap, caplog):
    source = "def __memento_unload__():\n    raise OSError('pool stuck')\n"
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": source + APP % "v1"})
    app = TestApp(wrap("shop.wsgi:app"), lint=True)
    app.get("/")
    edit(pkg / "wsgi.py", source + APP % "v2")
    assert app.get("/").text == "v2"
    assert "pool stuck" in caplog.text


def test_reload_method_forces_a_reload(make_package, wrap):
    make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    middleware = wrap("shop.wsgi:app")
    app = TestApp(middleware, lint=True)
    app.get("/")
    module = sys.modules["shop.wsgi"]
    middleware.reload()
    app.get("/")
    assert sys.modules["shop.wsgi"] is not module
    assert middleware.stats.reloads == 1


def test_context_manager_closes(make_package):
    make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    with memento.Mori("shop.wsgi:app", interval=0) as middleware:
        TestApp(middleware).get("/")
        assert middleware.reloading
    assert not middleware.reloading
    assert not [t for t in threading.enumerate() if t.name.startswith("memento")]


def test_factory_statement_is_called_again_after_reload(make_package, wrap):
    pkg = make_package(
        "shop",
        {"__init__.py": "", "wsgi.py": """\
            def create_app(greeting, punct="!"):
                def app(environ, start_response):
                    start_response("200 OK", [("Content-Type", "text/plain")])
                    return [(greeting + punct).encode()]
                return app
        """},
    )
    app = TestApp(wrap("shop.wsgi:create_app('hi', punct='?')"), lint=True)
    assert app.get("/").text == "hi?"
    source = (pkg / "wsgi.py").read_text()
    edit(pkg / "wsgi.py", source.replace("greeting + punct", "punct + greeting"))
    assert app.get("/").text == "?hi"


TREE = {
    "__init__.py": "",
    "marker.py": "MARKER = 'one'\n",
    "models.py": "from shop.marker import MARKER\n\ndef describe():\n    return MARKER\n",
    "other.py": "VALUE = 'other'\n",
    "views.py": "from shop import models, other\n\ndef home():\n"
                "    return models.describe() + ' ' + other.VALUE\n",
    "wsgi.py": "from shop import views\n"
               + APP.replace("%r.encode()", "views.home().encode()"),
}


def test_scope_dependents_forgets_the_change_its_importers_and_the_app(make_package):
    pkg = make_package("shop", TREE)
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False, scope="dependents")
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "one other"
    other = sys.modules["shop.other"]
    edit(pkg / "marker.py", "MARKER = 'two'\n")
    assert app.get("/").text == "two other"
    assert set(middleware.stats.last.forgotten) == {
        "shop.marker", "shop.models", "shop.views", "shop.wsgi"
    }
    assert sys.modules["shop.other"] is other


def test_scope_dependents_falls_back_to_all_when_it_cannot_tell(make_package, tmp_path):
    pkg = make_package("shop", TREE)
    config = tmp_path / "settings.toml"
    config.write_text("x = 1\n")
    middleware = memento.Mori(
        "shop.wsgi:app", interval=0, events=False, scope="dependents", watch=[str(config)]
    )
    app = TestApp(middleware, lint=True)
    app.get("/")
    edit(config, "x = 2\n")
    app.get("/")
    assert "shop.other" in middleware.stats.last.forgotten
    edit(pkg / "registry.py", "ITEMS = []\n")
    edit(pkg / "marker.py", "from shop import registry\nregistry.ITEMS.append(1)\nMARKER = 'x'\n")
    assert app.get("/").text == "x other"
    # the new module was not owned before: everything was forgotten
    assert "shop.other" in middleware.stats.last.forgotten
    edit(pkg / "marker.py", "from shop import registry\nregistry.ITEMS.append(1)\nMARKER = 'y'\n")
    assert app.get("/").text == "y other"
    assert "shop.other" in middleware.stats.last.forgotten  # registers into a kept module


def test_edit_made_while_turned_off_is_seen_after_turn_on(make_package, wrap):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    middleware = wrap("shop.wsgi:app")
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "v1"
    middleware.turn_off()
    edit(pkg / "wsgi.py", APP % "v2")
    assert app.get("/").text == "v1"
    middleware.turn_on()
    assert app.get("/").text == "v2"


SUBREQUEST = """\
import sys

VERSION = {version!r}

def app(environ, start_response):
    if environ["PATH_INFO"] == "/inner":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [sys.modules["shop.wsgi"].VERSION.encode()]
    {edit}
    inner = b"".join(MIDDLEWARE(dict(environ, PATH_INFO="/inner"), lambda *a: None))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [VERSION.encode() + b" " + inner]
"""


def test_a_sub_request_is_served_by_the_outer_request_generation(make_package, wrap):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": ""})
    new = SUBREQUEST.format(version="v2", edit="pass")
    edit_it = f"__import__('pathlib').Path({str(pkg / 'wsgi.py')!r}).write_text({new!r})"
    edit(pkg / "wsgi.py", SUBREQUEST.format(version="v1", edit=edit_it))
    middleware = wrap("shop.wsgi:app")
    import builtins

    builtins.MIDDLEWARE = middleware
    try:
        app = TestApp(middleware, lint=True)
        assert app.get("/").text == "v1 v1"
        assert app.get("/").text == "v2 v2"
    finally:
        del builtins.MIDDLEWARE


def test_a_one_item_list_keeps_its_length_for_content_length(make_package, live_server):
    import http.client
    from urllib.parse import urlsplit

    make_package("shop", {"__init__.py": "", "wsgi.py": """\
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"sized"]
    """})
    url = urlsplit(live_server(memento.Mori("shop.wsgi:app", interval=0), server="wsgiref"))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.read() == b"sized"
        assert response.getheader("Content-Length") == "5"
    finally:
        conn.close()
