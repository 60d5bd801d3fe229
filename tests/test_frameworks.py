"""The framework examples under examples/, copied and served with reloading.

Each test copies an example package into tmp_path (the repository's files are
never edited), wraps it with Mori or Assassin, edits a view, a template or a
model, and asserts the next answer. README.rst (Integrations) explains each case.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from helpers import edit, wait_until, write_package
from webtest import TestApp

import memento

# Pyramid imports pkg_resources, which recent setuptools deprecates loudly.
pytestmark = [
    pytest.mark.filterwarnings("ignore:pkg_resources is deprecated:UserWarning"),
    pytest.mark.filterwarnings("ignore:Deprecated call to `pkg_resources:DeprecationWarning"),
]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: The framework each example needs (all of them are in the ``test`` extra).
FRAMEWORKS = {
    "flask_app": "flask",
    "bottle_app": "bottle",
    "pyramid_app": "pyramid",
    "falcon_app": "falcon",
    "plain_app": None,
}

POLICIES: dict[str, Callable[..., memento.base.ReloadingMiddleware]] = {
    "mori": lambda statement, package, **options: memento.Mori(statement, **options),
    "assassin": lambda statement, package, **options: memento.Assassin(
        statement, [package], **options
    ),
}


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tmp_path on sys.path; the modules imported from it are forgotten afterwards.

    Unlike ``make_package`` this leaves the frameworks imported: zope.interface
    or SQLAlchemy's compiled parts do not survive being imported twice.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    root = os.path.join(str(tmp_path), "")
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(root):
            del sys.modules[name]


@pytest.fixture
def copy_example(app_dir: Path) -> Callable[[str], Path]:
    """Copy ``examples/<name>`` to ``app_dir/<name>``."""

    def copy(name: str) -> Path:
        if FRAMEWORKS[name]:
            pytest.importorskip(FRAMEWORKS[name])
        target = app_dir / name
        shutil.copytree(
            EXAMPLES / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        importlib.invalidate_caches()
        return target

    return copy


@pytest.fixture
def make_app(app_dir: Path) -> Callable[[str, dict[str, str]], Path]:
    """Write a package into ``app_dir``, like ``make_package``."""

    def make(name: str, files: dict[str, str]) -> Path:
        return write_package(app_dir, name, files)

    return make


@pytest.fixture(params=[*sorted(POLICIES), "mori-functions"])
def wrap(request: pytest.FixtureRequest) -> Callable[..., memento.base.ReloadingMiddleware]:
    """Wrap a statement with the parametrized policy (and scope, after a dash);
    polling on every request by default."""

    def make(statement: str, **options: Any) -> memento.base.ReloadingMiddleware:
        options.setdefault("interval", 0)
        options.setdefault("events", False)
        policy, _, scope = request.param.partition("-")
        if scope:
            options.setdefault("scope", scope)
        package = statement.partition(":")[0].partition(".")[0]
        return POLICIES[policy](statement, package, **options)

    return make


def replace_in(path: Path, old: str, new: str) -> None:
    """Edit ``path`` by replacing ``old``, which must be there, with ``new``."""
    source = path.read_text(encoding="utf-8")
    assert old in source, f"{old!r} not in {path}"
    edit(path, source.replace(old, new))


# -- Flask -------------------------------------------------------------------


def test_flask_view_edit_is_served(copy_example, wrap):
    pkg = copy_example("flask_app")
    app = TestApp(wrap("flask_app:create_app()"), lint=True)
    app.get("/").mustcontain("<h1>Fruit</h1>")
    replace_in(pkg / "views.py", 'TITLE = "Fruit"', 'TITLE = "Vegetables"')
    app.get("/").mustcontain("<h1>Vegetables</h1>", no="Fruit")


def test_flask_model_edit_is_served(copy_example, wrap):
    pkg = copy_example("flask_app")
    app = TestApp(wrap("flask_app.wsgi:app"), lint=True)
    assert app.get("/api/products").json == {"apple": 3, "pear": 4}
    replace_in(pkg / "models.py", 'Product("pear", 4)', 'Product("plum", 5)')
    assert app.get("/api/products").json == {"apple": 3, "plum": 5}


def test_flask_template_edit_is_served_when_watched(copy_example, wrap):
    pkg = copy_example("flask_app")
    app = TestApp(wrap("flask_app:create_app()", watch=[str(pkg / "templates")]), lint=True)
    app.get("/").mustcontain("<li>apple: 3</li>")
    replace_in(pkg / "templates" / "index.html", ": {{", " costs {{")
    app.get("/").mustcontain("<li>apple costs 3</li>")


def test_flask_template_edit_is_served_without_watch_and_without_reimport(copy_example):
    # The template folder is found from the application: Jinja's cache is
    # emptied, nothing is forgotten and the application object stays.
    pkg = copy_example("flask_app")
    mori = memento.Mori("flask_app:create_app()", interval=0, events=False)
    app = TestApp(mori, lint=True)
    app.get("/").mustcontain("<li>apple: 3</li>")
    served = mori.resolve()
    replace_in(pkg / "templates" / "index.html", ": {{", " costs {{")
    app.get("/").mustcontain("<li>apple costs 3</li>")
    assert mori.stats.last is not None and mori.stats.last.forgotten == ()
    assert mori.resolve() is served


def test_flask_blueprint_template_folder_is_watched(make_app):
    pkg = make_app(
        "shop",
        {
            "__init__.py": "",
            "pages/__init__.py": """\
                import flask

                bp = flask.Blueprint("pages", __name__, template_folder="templates")

                @bp.route("/")
                def index():
                    return flask.render_template("page.html")
            """,
            "pages/templates/page.html": "<p>v1</p>",
            "wsgi.py": """\
                import flask
                from shop.pages import bp

                app = flask.Flask(__name__)
                app.register_blueprint(bp)
            """,
        },
    )
    mori = memento.Mori("shop.wsgi:app", interval=0, events=False)
    app = TestApp(mori, lint=True)
    assert app.get("/").text == "<p>v1</p>"
    edit(pkg / "pages" / "templates" / "page.html", "<p>v2</p>")
    assert app.get("/").text == "<p>v2</p>"
    edit(pkg / "pages" / "__init__.py", (pkg / "pages" / "__init__.py").read_text() + "\n")
    assert app.get("/").text == "<p>v2</p>"
    assert mori.stats.last is not None and "shop.pages" in mori.stats.last.forgotten


def test_flask_template_edit_is_seen_by_the_watcher(copy_example):
    pytest.importorskip("watchfiles")
    pkg = copy_example("flask_app")
    mori = memento.Mori("flask_app:create_app()", watch=[str(pkg / "templates")], events=True)
    app = TestApp(mori, lint=True)
    app.get("/").mustcontain("<h1>Fruit</h1>")
    replace_in(pkg / "templates" / "index.html", "<h1>", "<h1>Fresh ")
    wait_until(lambda: "Fresh Fruit" in app.get("/").text, what="the watcher to report the edit")
    assert mori.stats.reloads == 1


def test_flask_routes_added_to_a_kept_blueprint_fail_to_reload(make_app):
    # A blueprint object that outlives a reload was registered on the last
    # application: Flask refuses new routes on it. Keep the blueprint and its
    # views together, in forgotten modules.
    pytest.importorskip("flask")
    pkg = make_app(
        "shop",
        {
            "__init__.py": "",
            "blueprints.py": "import flask\nbp = flask.Blueprint('shop', __name__)\n",
            "views.py": """\
                from shop.blueprints import bp

                @bp.route("/")
                def index():
                    return "v1"
            """,
            "wsgi.py": """\
                import flask

                def create_app():
                    from shop import views

                    app = flask.Flask(__name__)
                    app.register_blueprint(views.bp)
                    return app
            """,
        },
    )
    mori = memento.Mori(
        "shop.wsgi:create_app()", keep=["shop.blueprints"], interval=0, events=False
    )
    app = TestApp(mori, lint=True)
    assert app.get("/").text == "v1"
    replace_in(pkg / "views.py", '"v1"', '"v2"')
    app.get("/", status=500).mustcontain("AssertionError", "can no longer be called")


# -- Bottle ------------------------------------------------------------------


def test_bottle_route_edit_is_served(copy_example, wrap):
    pkg = copy_example("bottle_app")
    app = TestApp(wrap("bottle_app.wsgi:app"), lint=True)
    assert app.get("/hello/ann").text == "Hello, ann!"
    replace_in(pkg / "routes.py", 'f"Hello, {name}!"', 'f"Howdy, {name}!"')
    assert app.get("/hello/ann").text == "Howdy, ann!"


@pytest.fixture
def bottle_templates() -> Iterator[None]:
    """Empty bottle's template cache, global to the process, before and after.

    It is keyed by the ``id()`` of the lookup list: an earlier test's entry
    could answer for a new list that got the same ``id()``.
    """
    import bottle

    bottle.TEMPLATES.clear()
    yield
    bottle.TEMPLATES.clear()


def test_bottle_template_edit_is_served_when_watched(copy_example, wrap, bottle_templates):
    # memento empties bottle's template cache before each reload
    pkg = copy_example("bottle_app")
    app = TestApp(wrap("bottle_app.wsgi:app", watch=[str(pkg / "views")]), lint=True)
    app.get("/").mustcontain("<h1>In stock</h1>", "<li>pear</li>")
    replace_in(pkg / "views" / "index.tpl", "In stock", "Today")
    replace_in(pkg / "stock.py", '"pear"', '"plum"')
    app.get("/").mustcontain("<h1>Today</h1>", "<li>plum</li>", no="pear")


# -- Pyramid -----------------------------------------------------------------


def test_pyramid_scanned_view_edit_is_served(copy_example, wrap):
    pkg = copy_example("pyramid_app")
    app = TestApp(wrap("pyramid_app.wsgi:app"), lint=True)
    assert app.get("/").json == {"greeting": "Hello"}
    replace_in(pkg / "views.py", 'GREETING = "Hello"', 'GREETING = "Hi"')
    assert app.get("/").json == {"greeting": "Hi"}
    assert app.get("/hello/ann").text == "Hi, ann!"


def test_pyramid_new_route_and_scanned_view_are_served(copy_example, wrap):
    pkg = copy_example("pyramid_app")
    app = TestApp(wrap("pyramid_app:main({})"), lint=True)
    app.get("/bye", status=404)
    replace_in(
        pkg / "__init__.py",
        'config.add_route("home", "/")',
        'config.add_route("home", "/")\n        config.add_route("bye", "/bye")',
    )
    with open(pkg / "views.py", "a", encoding="utf-8") as views:
        views.write(
            textwrap.dedent("""
                @view_config(route_name="bye", renderer="string")
                def bye(request: Request) -> str:
                    return "Goodbye"
            """)
        )
    assert app.get("/bye").text == "Goodbye"


def test_pyramid_through_paste_deploy(copy_example):
    loadapp = pytest.importorskip("paste.deploy").loadapp

    pkg = copy_example("pyramid_app")
    with open(pkg / "development.ini", "a", encoding="utf-8") as ini:
        ini.write("interval = 0\nevents = false\n")
    middleware = loadapp("config:development.ini", relative_to=str(pkg))
    assert isinstance(middleware, memento.Mori)
    app = TestApp(middleware, lint=True)
    assert app.get("/hello/ann").text == "Hello, ann!"
    replace_in(pkg / "views.py", 'GREETING = "Hello"', 'GREETING = "Hi"')
    assert app.get("/hello/ann").text == "Hi, ann!"


# -- Falcon ------------------------------------------------------------------


def test_falcon_resource_edit_is_served_and_its_state_starts_afresh(copy_example, wrap):
    pkg = copy_example("falcon_app")
    app = TestApp(wrap("falcon_app.wsgi:app"), lint=True)
    app.put_json("/stock/apple", {"amount": 7}, status=204)
    assert app.get("/stock/apple").json == {"name": "apple", "amount": "7 kg"}
    replace_in(pkg / "resources.py", 'UNIT = "kg"', 'UNIT = "lb"')
    # the resources are made anew with the application: their state too
    assert app.get("/stock/apple").json == {"name": "apple", "amount": "3 lb"}
    app.get("/stock/kiwi", status=404)


# -- plain WSGI --------------------------------------------------------------


def test_plain_page_edit_is_served(copy_example, wrap):
    pkg = copy_example("plain_app")
    app = TestApp(wrap("plain_app.wsgi:app"), lint=True)
    assert app.get("/about").text == "Made without a framework."
    replace_in(pkg / "pages.py", "Made without", "Built without")
    assert app.get("/about").text == "Built without a framework."


def test_plain_settings_edit_is_served_when_watched(copy_example, wrap):
    pkg = copy_example("plain_app")
    app = TestApp(wrap("plain_app.wsgi:app", watch=[str(pkg / "settings.json")]), lint=True)
    assert app.get("/").text == "Welcome to Plain shop"
    edit(pkg / "settings.json", '{"site": "Corner shop"}\n')
    assert app.get("/").text == "Welcome to Corner shop"


# -- SQLAlchemy --------------------------------------------------------------

DB = """\
import sqlalchemy

engine = sqlalchemy.create_engine(%r)
"""

MODELS = """\
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
"""

SHOP = """\
from sqlalchemy import select
from sqlalchemy.orm import Session

from shop.db import engine
from shop.models import Base, Product

Base.metadata.create_all(engine)


def app(environ, start_response):
    with Session(engine) as session:
        if environ["REQUEST_METHOD"] == "POST":
            session.add(Product(name=environ["PATH_INFO"].strip("/")))
            session.commit()
        names = session.scalars(select(Product.name).order_by(Product.id)).all()
    body = %r.format(", ".join(names)).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


@pytest.fixture
def sqlalchemy_shop(
    make_app: Callable[..., Path], tmp_path: Path
) -> Iterator[Callable[[str], Path]]:
    """Make a shop with ``db`` as shop.db (its engine disposed afterwards), shop.models."""
    pytest.importorskip("sqlalchemy")

    def make(db: str) -> Path:
        url = f"sqlite:///{tmp_path / 'shop.sqlite'}"
        files = {"__init__.py": "", "db.py": db % url, "models.py": MODELS, "wsgi.py": SHOP % "{}"}
        return make_app("shop", files)

    yield make
    module = sys.modules.get("shop.db")
    if module is not None:
        module.engine.dispose()


@pytest.mark.parametrize(
    "wrap_kept",
    [
        lambda: memento.Mori("shop.wsgi:app", keep=["shop.db"], interval=0, events=False),
        lambda: memento.Assassin("shop.wsgi:app", ["shop"], ["shop.db"], interval=0, events=False),
    ],
    ids=["mori-keep", "assassin-exceptions"],
)
def test_sqlalchemy_engine_in_a_kept_module_survives_reloads(sqlalchemy_shop, wrap_kept):
    pkg = sqlalchemy_shop(DB)
    app = TestApp(wrap_kept(), lint=True)
    assert app.post("/apple").text == "apple"
    engine = sys.modules["shop.db"].engine
    # the models are forgotten with the rest: a new Base declares them afresh
    edit(pkg / "wsgi.py", SHOP % "in stock: {}")
    edit(pkg / "models.py", MODELS + "\n# edited\n")
    assert app.post("/pear").text == "in stock: apple, pear"
    assert sys.modules["shop.db"].engine is engine
    assert sys.modules["shop"].db is sys.modules["shop.db"]


def test_sqlalchemy_engine_is_disposed_by_memento_unload(sqlalchemy_shop):
    unloading_db = DB + "\n\ndef __memento_unload__():\n    engine.dispose()\n"
    pkg = sqlalchemy_shop(unloading_db)
    app = TestApp(memento.Mori("shop.wsgi:app", interval=0, events=False), lint=True)
    assert app.post("/apple").text == "apple"
    old = sys.modules["shop.db"].engine
    pool = old.pool
    assert pool.checkedin() == 1
    edit(pkg / "wsgi.py", SHOP % "in stock: {}")
    assert app.get("/").text == "in stock: apple"
    assert sys.modules["shop.db"].engine is not old
    assert pool.checkedin() == 0


KEPT_BASE = """\
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass
"""

MODELS_ON_KEPT_BASE = """\
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from shop.db import Base


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
"""


@pytest.mark.filterwarnings("ignore:This declarative base already contains a class")
def test_sqlalchemy_models_on_a_kept_base_cannot_be_declared_again(sqlalchemy_shop):
    # Base, and so its MetaData, is kept while the models are forgotten: the
    # next generation declares their tables a second time on it.
    pkg = sqlalchemy_shop(DB + "\n\n" + KEPT_BASE)
    edit(pkg / "models.py", MODELS_ON_KEPT_BASE)
    mori = memento.Mori("shop.wsgi:app", keep=["shop.db"], interval=0, events=False)
    app = TestApp(mori, lint=True)
    assert app.post("/apple").text == "apple"
    edit(pkg / "wsgi.py", SHOP % "in stock: {}")
    app.get("/", status=500).mustcontain("InvalidRequestError", "already defined")
