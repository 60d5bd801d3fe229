"""scope="functions": which edits are patched in place, which are re-imported.

The decision alone (``patch.decide``) is a table of edit kinds; then the same
kinds end to end through ``Mori(..., scope="functions")`` with WebTest, where
what ran while the application loaded is known too.
"""

from __future__ import annotations

import importlib
import linecache
import os
import sys
import textwrap
import time
import traceback
from pathlib import Path
from typing import Callable

import pytest
from helpers import edit
from webtest import TestApp

import memento
from memento import patch

# -- the decision -------------------------------------------------------------

MODULE = '''\
"""A module with one of each kind of function."""
import functools
from dataclasses import dataclass

LIMIT = 10


def plain(a, b=1):
    """Add."""
    total = a + b
    return total


@functools.lru_cache(maxsize=None)
def cached(n):
    return n * 2


async def fetch():
    return "async"


def outer():
    def inner():
        return "inner"
    return inner()


def gen():
    yield 1


square = lambda x: x * x


class Base:
    def hello(self):
        return "base"


class Child(Base):
    kind = "child"

    def hello(self):
        return super().hello() + "!"

    @property
    def size(self):
        return 1

    @size.setter
    def size(self, value):
        self._size = value

    @staticmethod
    def make():
        return Child()

    @classmethod
    def build(cls):
        return cls()


@dataclass
class Point:
    x: int = 0

    def norm(self):
        return abs(self.x)
'''


def body_edit(old: str, new: str) -> Callable[[str], str]:
    def change(source: str) -> str:
        assert old in source, old
        return source.replace(old, new)

    return change


#: edit kind → (how to edit MODULE, the changed functions, or None: re-import)
DECISIONS: dict[str, tuple[Callable[[str], str], set[str] | None]] = {
    "function body": (body_edit("total = a + b", "total = a - b"), {"plain"}),
    "cached function body": (body_edit("n * 2", "n * 3"), {"cached"}),
    "async function body": (body_edit('return "async"', 'return "awaited"'), {"fetch"}),
    "nested function body": (body_edit('return "inner"', 'return "in"'), {"outer"}),
    "generator body": (body_edit("yield 1", "yield 2"), {"gen"}),
    "method using super()": (body_edit('+ "!"', '+ "?"'), {"Child.hello"}),
    "property getter": (body_edit("return 1\n", "return 2\n"), {"Child.size"}),
    "property setter": (body_edit("self._size = value", "self._size = -value"), {"Child.size"}),
    "staticmethod": (body_edit("return Child()", "return Child().make()"), {"Child.make"}),
    "classmethod": (body_edit("return cls()", "return cls().build()"), {"Child.build"}),
    "dataclass method": (body_edit("abs(self.x)", "abs(self.x) + 1"), {"Point.norm"}),
    "comment only": (body_edit("    total = a + b\n", "    # sum\n    total = a + b\n"), set()),
    "signature": (body_edit("def plain(a, b=1)", "def plain(a, c=1)"), None),
    "default": (body_edit("b=1", "b=2"), None),
    "decorator": (body_edit("maxsize=None", "maxsize=4"), None),
    "docstring": (body_edit('"""Add."""', '"""Sum."""'), None),
    "new function": (lambda s: s + "\n\ndef extra():\n    return 1\n", None),
    "removed function": (body_edit("def gen():\n    yield 1\n", ""), None),
    "module constant": (body_edit("LIMIT = 10", "LIMIT = 11"), None),
    "module lambda": (body_edit("x * x", "x ** 2"), None),
    "class attribute": (body_edit('kind = "child"', 'kind = "kid"'), None),
    "dataclass field": (body_edit("x: int = 0", "x: int = 1"), None),
    "import": (body_edit("import functools\n", "import functools\nimport os\n"), None),
    "super() added": (body_edit('return "base"', "return super().__repr__()"), None),
    "super() removed": (body_edit('super().hello() + "!"', '"child!"'), None),
    "syntax error": (body_edit("total = a + b", "total = a +"), None),
    "async to sync": (body_edit("async def fetch", "def fetch"), None),
}


@pytest.mark.parametrize("kind", list(DECISIONS))
def test_decision(kind: str) -> None:
    change, expected = DECISIONS[kind]
    decided = patch.decide(MODULE, change(MODULE), "/app/module.py")
    if expected is None:
        assert decided is None
    else:
        assert decided is not None
        assert {swap.qualname for swap in decided.swaps if swap.changed} == expected


def test_lines_moved_below_an_edit_are_swapped_too() -> None:
    decided = patch.decide(MODULE, MODULE.replace("total = a + b", "total = (\n  a + b\n)"), "m.py")
    assert decided is not None
    moved = {swap.qualname for swap in decided.swaps if not swap.changed}
    assert {"cached", "fetch", "Child.hello", "Point.norm"} <= moved
    assert all(swap.new.co_filename == "m.py" for swap in decided.swaps)


def test_nested_functions_are_flagged() -> None:
    decided = patch.decide(MODULE, "\n" + MODULE, "m.py")
    assert decided is not None
    nested = {swap.qualname for swap in decided.swaps if swap.nested}
    assert nested == {"outer"}


def test_identical_sources_swap_nothing() -> None:
    decided = patch.decide(MODULE, MODULE, "m.py")
    assert decided is not None and decided.swaps == ()


# -- end to end ---------------------------------------------------------------

APP = """\
import functools
import types

ROUTES = {}
COUNTER = [0]


def route(path):
    def register(view):
        ROUTES[path] = view
        return view
    return register


def make_app():
    def app(environ, start_response):
        COUNTER[0] += 1
        body = str(ROUTES[environ["PATH_INFO"]]()).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    return app
"""

VIEWS = """\
import asyncio
import functools
import types
from dataclasses import dataclass

from shop.web import COUNTER, route

LABEL = "v1"


def traced(view):
    @functools.wraps(view)
    def wrapper():
        return "[" + view() + "]"
    return wrapper


def helper():
    return "help-v1"


alias = helper
COPIES = {"copy": types.FunctionType(helper.__code__, globals(), "copy")}


@route("/plain")
def plain():
    return "plain-v1"


@route("/count")
def count():
    return f"count {COUNTER[0]}"


@route("/wrapped")
@traced
def wrapped():
    return "wrapped-v1"


@functools.lru_cache(maxsize=None)
def expensive():
    return "cached-v1"


@route("/cached")
def cached():
    return expensive()


@route("/copies")
def copies():
    return alias() + " " + COPIES["copy"]()


class Base:
    def hello(self):
        return "base"


class Child(Base):
    def hello(self):
        return super().hello() + "-child-v1"

    @property
    def size(self):
        return "size-v1"

    @staticmethod
    def static():
        return "static-v1"

    @classmethod
    def klass(cls):
        return "class-v1"


@dataclass
class Point:
    x: int = 1

    def label(self):
        return f"point-v1 {self.x}"


async def fetch():
    return "async-v1"


@route("/objects")
def objects():
    child = Child()
    return " ".join([child.hello(), child.size, Child.static(), Child.klass(), Point().label()])


@route("/async")
def run_async():
    return asyncio.run(fetch())


def make_greeting(name):
    def greet():
        return f"hello {name} v1"
    return greet


route("/greet")(make_greeting("bob"))


def setup_label():
    return "setup-v1"


SETUP = setup_label()


@route("/setup")
def setup():
    return SETUP + " " + setup_label()


@route("/fail")
def fail():
    return 1 / 0
"""


@pytest.fixture
def shop(make_package: Callable[..., Path]) -> Path:
    pkg = make_package(
        "shop",
        {
            "__init__.py": "",
            "web.py": APP,
            "views.py": VIEWS,
            "wsgi.py": "from shop.web import make_app\nfrom shop import views\n",
        },
    )
    backdate(pkg)
    return pkg


def backdate(folder: Path) -> None:
    """Date the files a second back: a file modified after its import started is
    never taken for the source it was imported from."""
    past = time.time_ns() - 1_000_000_000
    for path in folder.rglob("*.py"):
        os.utime(path, ns=(past, past))


def served(**options: object) -> tuple[memento.Mori, TestApp]:
    mori = memento.Mori(
        "shop.wsgi:make_app()", interval=0, events=False, scope="functions", **options
    )
    return mori, TestApp(mori, lint=True)


def replace_in(path: Path, old: str, new: str) -> None:
    source = path.read_text(encoding="utf-8")
    assert old in source, f"{old!r} not in {path}"
    edit(path, source.replace(old, new))


#: edit of VIEWS → (URL, (old, new), answer after it, path taken)
EDITS = {
    "view body": ("/plain", ('"plain-v1"', '"plain-v2"'), "plain-v2", "functions"),
    "view under functools.wraps": (
        "/wrapped",
        ('"wrapped-v1"', '"wrapped-v2"'),
        "[wrapped-v2]",
        "functions",
    ),
    "lru_cache cleared": ("/cached", ('"cached-v1"', '"cached-v2"'), "cached-v2", "functions"),
    "alias and code copy": (
        "/copies",
        ('"help-v1"', '"help-v2"'),
        "help-v2 help-v2",
        "functions",
    ),
    "methods": (
        "/objects",
        ('"-child-v1"', '"-child-v2"'),
        "base-child-v2 size-v1 static-v1 class-v1 point-v1 1",
        "functions",
    ),
    "property": (
        "/objects",
        ('"size-v1"', '"size-v2"'),
        "base-child-v1 size-v2 static-v1 class-v1 point-v1 1",
        "functions",
    ),
    "static and class methods": (
        "/objects",
        ('"static-v1"', '"static-v2"'),
        "base-child-v1 size-v1 static-v2 class-v1 point-v1 1",
        "functions",
    ),
    "dataclass method": (
        "/objects",
        ('f"point-v1', 'f"point-v2'),
        "base-child-v1 size-v1 static-v1 class-v1 point-v2 1",
        "functions",
    ),
    "async function": ("/async", ('"async-v1"', '"async-v2"'), "async-v2", "functions"),
    "module constant": ("/plain", ('LABEL = "v1"', 'LABEL = "v2"'), "plain-v1", "fallback"),
    "dataclass field": (
        "/objects",
        ("x: int = 1", "x: int = 2"),
        "base-child-v1 size-v1 static-v1 class-v1 point-v1 2",
        "fallback",
    ),
    "closure of a function that ran": (
        "/greet",
        ("hello {name} v1", "hello {name} v2"),
        "hello bob v2",
        "fallback",
    ),
    "decorator body that ran": (
        "/wrapped",
        ('"[" + view() + "]"', '"<" + view() + ">"'),
        "<wrapped-v1>",
        "fallback",
    ),
    "function called at import": (
        "/setup",
        ('"setup-v1"', '"setup-v2"'),
        "setup-v2 setup-v2",
        "fallback",
    ),
    "new view": (
        "/plain",
        ('@route("/count")', '@route("/new")\ndef new():\n    return 1\n\n\n@route("/count")'),
        "plain-v1",
        "fallback",
    ),
}


@pytest.mark.parametrize("kind", list(EDITS))
def test_edit_is_served_by_the_path_it_allows(shop: Path, kind: str) -> None:
    url, (old, new), expected, path = EDITS[kind]
    mori, app = served()
    app.get(url)
    app.get("/objects")
    edit_kind_into(shop, old, new)
    assert app.get(url).text == expected
    assert mori.stats.last is not None and mori.stats.last.error is None
    if path == "fallback":  # "all" when the imports cannot be told for sure
        assert mori.stats.last.path in ("dependents", "all")
    else:
        assert mori.stats.last.path == path


def edit_kind_into(shop: Path, old: str, new: str) -> None:
    replace_in(shop / "views.py", old, new)


def test_patched_edit_keeps_state_and_the_application(shop: Path) -> None:
    mori, app = served()
    assert app.get("/count").text == "count 1"
    served_app, module = mori.resolve(), sys.modules["shop.views"]
    replace_in(shop / "views.py", 'return f"count {COUNTER[0]}"', 'return f"n={COUNTER[0]}"')
    assert app.get("/count").text == "n=2"
    assert mori.resolve() is served_app
    assert sys.modules["shop.views"] is module
    last = mori.stats.last
    assert last is not None and last.path == "functions" and last.forgotten == ()
    assert mori.stats.generation == 2


def test_patches_follow_each_other_and_a_fallback(shop: Path) -> None:
    mori, app = served()
    app.get("/plain")
    for version in ("v2", "v3"):
        replace_in(
            shop / "views.py",
            '"plain-v1"' if version == "v2" else '"plain-v2"',
            f'"plain-{version}"',
        )
        assert app.get("/plain").text == f"plain-{version}"
        assert mori.stats.last is not None and mori.stats.last.path == "functions"
    replace_in(shop / "views.py", 'LABEL = "v1"', 'LABEL = "v9"')
    assert app.get("/plain").text == "plain-v3"
    assert mori.stats.last is not None and mori.stats.last.path in ("dependents", "all")
    # The source re-imported just now is known: the next body edit is patched.
    replace_in(shop / "views.py", '"plain-v3"', '"plain-v4"')
    assert app.get("/plain").text == "plain-v4"
    assert mori.stats.last is not None and mori.stats.last.path == "functions"


def test_factory_edit_falls_back(shop: Path) -> None:
    mori, app = served()
    assert app.get("/plain").text == "plain-v1"
    replace_in(shop / "web.py", "COUNTER[0] += 1", "COUNTER[0] += 2")
    assert app.get("/count").text == "count 2"
    assert mori.stats.last is not None and mori.stats.last.path != "functions"


def test_traceback_after_a_patch_shows_the_new_line(shop: Path) -> None:
    mori, app = served(on_error="raise")
    with pytest.raises(ZeroDivisionError):
        app.get("/fail")
    replace_in(shop / "views.py", "    return 1 / 0\n", "    x = 0\n\n    return 2 / x\n")
    with pytest.raises(ZeroDivisionError) as raised:
        app.get("/fail")
    assert mori.stats.last is not None and mori.stats.last.path == "functions"
    frame = traceback.extract_tb(raised.value.__traceback__)[-1]
    lines = (shop / "views.py").read_text().splitlines()
    assert frame.name == "fail" and frame.line == "return 2 / x"
    assert lines[frame.lineno - 1].strip() == "return 2 / x"
    assert linecache.getline(frame.filename, frame.lineno).strip() == "return 2 / x"


def test_stale_bytecode_does_not_matter(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Bytecode of an edit of the same size and modification time as the
    # source is imported: the source differs from what runs, so the next
    # body edit is re-imported rather than patched over the wrong code.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    views = shop / "views.py"
    importlib.import_module("shop.views")
    for name in [name for name in sys.modules if name.startswith("shop")]:
        del sys.modules[name]
    stat = views.stat()
    views.write_text(views.read_text().replace('"plain-v1"', '"plain-v7"'))
    os.utime(views, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    importlib.invalidate_caches()
    mori, app = served()
    assert app.get("/plain").text == "plain-v1"  # the stale bytecode
    replace_in(views, '"help-v1"', '"help-v2"')
    assert app.get("/plain").text == "plain-v7"
    assert mori.stats.last is not None and mori.stats.last.path in ("dependents", "all")


def test_generator_in_flight_keeps_its_code(shop: Path) -> None:
    replace_in(
        shop / "views.py",
        "async def fetch",
        "def numbers():\n    yield 1\n    yield 2\n\n\nasync def fetch",
    )
    backdate(shop)
    mori, app = served()
    app.get("/plain")
    views = sys.modules["shop.views"]
    running = views.numbers()
    assert next(running) == 1
    replace_in(shop / "views.py", "yield 2", "yield 20")
    app.get("/plain")
    assert mori.stats.last is not None and mori.stats.last.path == "functions"
    assert next(running) == 2
    assert list(views.numbers()) == [1, 20]


def test_late_imported_module_falls_back(shop: Path) -> None:
    (shop / "late.py").write_text("def value():\n    return 'late-v1'\n")
    backdate(shop)
    replace_in(
        shop / "views.py",
        '    return "plain-v1"',
        "    from shop import late\n    return late.value()",
    )
    backdate(shop)
    mori, app = served()
    assert app.get("/plain").text == "late-v1"
    replace_in(shop / "late.py", "late-v1", "late-v2")
    assert app.get("/plain").text == "late-v2"
    assert mori.stats.last is not None and mori.stats.last.path != "functions"


def test_other_scopes_record_nothing(shop: Path) -> None:
    mori = memento.Mori("shop.wsgi:make_app()", interval=0, events=False, scope="dependents")
    app = TestApp(mori, lint=True)
    app.get("/plain")
    replace_in(shop / "views.py", '"plain-v1"', '"plain-v2"')
    assert app.get("/plain").text == "plain-v2"
    assert mori.stats.last is not None and mori.stats.last.path in ("dependents", "all")
    assert not mori._patcher._sources


def test_flask_app_and_jinja_environment_stay(make_package: Callable[..., Path]) -> None:
    pytest.importorskip("flask")
    pkg = make_package(
        "flasky",
        {
            "__init__.py": textwrap.dedent(
                """\
                from flask import Flask

                def create_app():
                    app = Flask(__name__)
                    from .views import bp
                    app.register_blueprint(bp)
                    return app
                """
            ),
            "views.py": textwrap.dedent(
                """\
                from flask import Blueprint, render_template_string

                bp = Blueprint("shop", __name__)

                @bp.route("/")
                def index():
                    return render_template_string("<p>{{ word }}</p>", word="v1")
                """
            ),
        },
    )
    backdate(pkg)
    mori = memento.Mori("flasky:create_app()", interval=0, events=False, scope="functions")
    app = TestApp(mori, lint=True)
    app.get("/").mustcontain("<p>v1</p>")
    flask_app = mori.resolve()
    jinja_env = flask_app.jinja_env
    replace_in(pkg / "views.py", 'word="v1"', 'word="v2"')
    app.get("/").mustcontain("<p>v2</p>")
    assert mori.stats.last is not None and mori.stats.last.path == "functions"
    assert mori.resolve() is flask_app
    assert flask_app.jinja_env is jinja_env


def test_scope_functions_is_an_option_everywhere() -> None:
    from memento.options import SCOPES, Options

    assert "functions" in SCOPES
    assert Options.read(scope="Functions").scope == "functions"
