"""Failed edits: every failure kind under every on_error mode, then the fix."""

from __future__ import annotations

import gc
import json
import sys
import weakref
from wsgiref.validate import validator

import pytest
from helpers import APP, edit
from webtest import TestApp

import memento

GOOD = "from shop import helper\n" + APP.replace("%r.encode()", "helper.TEXT.encode()")
FAILURES = {
    "syntax error": ("wsgi.py", "def app(:\n", "SyntaxError"),
    "exception at import": ("helper.py", "TEXT = 'x'\nraise RuntimeError('boom at import')\n",
                            "RuntimeError"),
    "missing module": ("helper.py", "import no_such_module_here\nTEXT = 'x'\n",
                       "ModuleNotFoundError"),
    "failing factory": ("wsgi.py", "def make():\n    raise LookupError('no config')\n",
                        "LookupError"),
}


def make_shop(make_package):
    return make_package(
        "shop",
        {"__init__.py": "", "helper.py": "TEXT = 'v1'\n",
         "wsgi.py": GOOD + "\ndef make():\n    return app\n"},
    )


def fix(pkg, text="v2"):
    edit(pkg / "helper.py", f"TEXT = {text!r}\n")
    edit(pkg / "wsgi.py", GOOD + "\ndef make():\n    return app\n")


def wrap(on_error, **options):
    return memento.Mori("shop.wsgi:make()", interval=0, events=False, on_error=on_error,
                        **options)


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_page_answers_500_until_fixed(make_package, kind):
    pkg = make_shop(make_package)
    middleware = wrap("page")
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "v1"
    filename, source, name = FAILURES[kind]
    edit(pkg / filename, source)
    for _ in range(2):
        page = app.get("/", status=500, headers={"Accept": "text/html"})
        page.mustcontain(name, filename)
    assert not [m for m in sys.modules if m.startswith("shop.")]
    assert middleware.stats.failures == 1
    assert middleware.stats.last.error.__class__.__name__ == name
    fix(pkg)
    assert app.get("/").text == "v2"
    assert middleware.stats.reloads == 1


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_keep_serves_the_last_good_code(make_package, kind, caplog):
    pkg = make_shop(make_package)
    middleware = wrap("keep")
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "v1"
    old = sys.modules["shop.wsgi"]
    filename, source, name = FAILURES[kind]
    edit(pkg / filename, source)
    assert app.get("/").text == "v1"
    assert app.get("/").text == "v1"
    assert sys.modules["shop.wsgi"] is old
    assert name in caplog.text and "serving the last good code" in caplog.text
    assert middleware.stats.failures == 1
    fix(pkg)
    assert app.get("/").text == "v2"


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_raise_lets_the_exception_through(make_package, kind):
    pkg = make_shop(make_package)
    app = TestApp(wrap("raise"), lint=True)
    assert app.get("/").text == "v1"
    filename, source, name = FAILURES[kind]
    edit(pkg / filename, source)
    for _ in range(2):
        with pytest.raises(Exception) as info:
            app.get("/")
        assert type(info.value).__name__ == name
    fix(pkg)
    assert app.get("/").text == "v2"


def test_callable_on_error_answers_in_place_of_the_page(make_package):
    pkg = make_shop(make_package)

    def as_json(info, environ, start_response):
        body = json.dumps({"error": type(info.error).__name__}).encode()
        start_response("503 Service Unavailable", [("Content-Type", "application/json")])
        return [body]

    app = TestApp(wrap(as_json), lint=True)
    app.get("/")
    edit(pkg / "wsgi.py", "def app(:\n")
    assert app.get("/", status=503).json == {"error": "SyntaxError"}


def test_failure_at_first_import_is_served_as_page_then_fixed(make_package):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": "def app(:\n"})
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False, on_error="keep")
    app = TestApp(middleware, lint=True)
    app.get("/", status=500).mustcontain("SyntaxError")
    edit(pkg / "wsgi.py", APP % "fixed")
    assert app.get("/").text == "fixed"


def test_deleted_app_module_then_restored(make_package):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    app = TestApp(memento.Mori("shop.wsgi:app", interval=0, events=False), lint=True)
    assert app.get("/").text == "v1"
    (pkg / "wsgi.py").unlink()
    app.get("/", status=500).mustcontain("shop.wsgi")
    edit(pkg / "wsgi.py", APP % "back")
    assert app.get("/").text == "back"


def test_error_page_escapes_and_hides_details_from_remote_clients(make_package, tmp_path):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    app = TestApp(memento.Mori("shop.wsgi:app", interval=0, events=False), lint=True)
    app.get("/")
    edit(pkg / "wsgi.py", "raise ValueError('<script>alert(1)</script> in ' + __file__)\n")
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    html = app.get("/", status=500, headers={"Accept": "text/html"}, extra_environ=remote).text
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)" in html
    assert str(tmp_path) not in html
    assert "Traceback" not in html and "raise ValueError" not in html
    local = app.get("/", status=500, headers={"Accept": "text/html"},
                    extra_environ={"REMOTE_ADDR": "127.0.0.1"}).text
    assert "raise ValueError" in local
    assert "<script>alert(1)" not in local
    text = app.get("/", status=500, headers={"Accept": "text/plain"}, extra_environ=remote)
    assert text.content_type == "text/plain"
    forced = memento.Mori("shop.wsgi:app", interval=0, events=False, show_tracebacks=False)
    TestApp(forced).get("/", status=500, extra_environ={"REMOTE_ADDR": "127.0.0.1"}).mustcontain(
        no=["raise ValueError"]
    )


def test_pep3333_on_both_sides_through_reloads_and_errors(make_package):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    inner = memento.Mori("shop.wsgi:app", interval=0, events=False)
    app = TestApp(validator(inner), lint=True)
    assert app.get("/").text == "v1"
    edit(pkg / "wsgi.py", APP % "v2")
    assert app.get("/").text == "v2"
    edit(pkg / "wsgi.py", "def app(:\n")
    app.get("/", status=500)
    edit(pkg / "wsgi.py", "from wsgiref.validate import validator\n" + APP % "v3"
         + "app = validator(app)\n")
    assert app.get("/").text == "v3"


CLOSING = """\
import sys
CLOSED = sys.modules.setdefault("shop_closed_log", type(sys)("shop_closed_log"))
CLOSED.__dict__.setdefault("count", 0)

class Body:
    def __init__(self, chunks, fail=False):
        self.chunks, self.fail = chunks, fail
    def __iter__(self):
        for chunk in self.chunks:
            yield chunk
        if self.fail:
            raise RuntimeError("broken stream")
    def close(self):
        CLOSED.count += 1

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body([b"a", b"b", b"c"], fail=environ["PATH_INFO"] == "/fail")
"""


def test_the_application_iterable_is_closed_exactly_once(make_package):
    make_package("shop", {"__init__.py": "", "wsgi.py": CLOSING})
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "x",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http"}

    def closed():
        return sys.modules["shop_closed_log"].count

    result = middleware(dict(environ), lambda *a: None)
    assert b"".join(result) == b"abc"
    result.close()
    result.close()
    assert closed() == 1
    result = middleware(dict(environ), lambda *a: None)
    next(iter(result))  # the client went away after one chunk
    result.close()
    assert closed() == 2
    result = middleware(dict(environ, PATH_INFO="/fail"), lambda *a: None)
    with pytest.raises(RuntimeError):
        list(result)
    result.close()
    assert closed() == 3
    assert middleware._gate.open_responses == 0
    del sys.modules["shop_closed_log"]


def test_an_old_generation_is_garbage_once_the_new_one_serves(make_package):
    pkg = make_package(
        "shop",
        {"__init__.py": "", "wsgi.py": "BIG = bytearray(10**6)\n" + APP % "v1"},
    )
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False)
    app = TestApp(middleware, lint=True)
    app.get("/")
    first = weakref.ref(sys.modules["shop.wsgi"])
    first_app = weakref.ref(middleware.resolve())
    for n in range(2, 5):
        edit(pkg / "wsgi.py", "BIG = bytearray(10**6)\n" + APP % f"v{n}")
        assert app.get("/").text == f"v{n}"
    gc.collect()
    assert first() is None
    assert first_app() is None


def test_system_exit_at_import_is_a_failed_reload(make_package):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False)
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "v1"
    edit(pkg / "wsgi.py", "import sys\nsys.exit(3)\n")
    app.get("/", status=500).mustcontain("SystemExit")
    assert "shop.wsgi" not in sys.modules
    assert middleware.stats.failures == 1
    edit(pkg / "wsgi.py", APP % "v2")
    assert app.get("/").text == "v2"


def test_raise_keeps_the_traceback_from_growing(make_package):
    pkg = make_shop(make_package)
    app = TestApp(wrap("raise"), lint=True)
    app.get("/")
    edit(pkg / "wsgi.py", "def app(:\n")
    lengths = []
    for _ in range(5):
        with pytest.raises(SyntaxError) as info:
            app.get("/")
        tb, depth = info.value.__traceback__, 0
        while tb is not None:
            tb, depth = tb.tb_next, depth + 1
        lengths.append(depth)
    assert len(set(lengths)) == 1, lengths


def test_creating_the_missing_module_is_noticed(make_package):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    app = TestApp(memento.Mori("shop.wsgi:app", interval=0, events=False), lint=True)
    app.get("/")
    edit(pkg / "wsgi.py", "from shop import views\n" + APP % "v2")
    app.get("/", status=500).mustcontain("views")
    edit(pkg / "views.py", "")
    assert app.get("/").text == "v2"


def test_keep_with_scope_dependents_goes_on_tracking_everything(make_package):
    pkg = make_package(
        "shop",
        {"__init__.py": "", "models.py": "M = 'm1'\n", "views.py": "V = 'v1'\n",
         "wsgi.py": "from shop import models, views\n"
                    + APP.replace("%r.encode()", "(views.V + models.M).encode()")},
    )
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False, on_error="keep",
                              scope="dependents")
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "v1m1"
    edit(pkg / "views.py", "V = (\n")
    assert app.get("/").text == "v1m1"
    edit(pkg / "models.py", "M = 'm2'\n")
    assert app.get("/").text == "v1m1"  # the app module imports the broken views again
    assert middleware.stats.failures == 2
    edit(pkg / "views.py", "V = 'v2'\n")
    assert app.get("/").text == "v2m2"


def test_first_successful_import_after_a_failure_is_not_a_reload(make_package):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": "def app(:\n"})
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False)
    calls = []
    middleware.after_reload(calls.append)
    app = TestApp(middleware, lint=True)
    app.get("/", status=500)
    edit(pkg / "wsgi.py", APP % "v1")
    assert app.get("/").text == "v1"
    assert (middleware.stats.reloads, middleware.stats.generation, calls) == (0, 1, [])


def test_reload_after_a_failure_counts_the_modules_it_imported(make_package, caplog):
    pkg = make_shop(make_package)
    app = TestApp(wrap("page"), lint=True)
    assert app.get("/").text == "v1"
    edit(pkg / "wsgi.py", "def app(:\n")
    app.get("/", status=500)
    caplog.clear()
    with caplog.at_level("INFO", logger="memento"):
        fix(pkg)
        assert app.get("/").text == "v2"
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reloaded")]
    assert line.startswith("reloaded 3 modules in"), line
