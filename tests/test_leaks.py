"""Forgotten generations: unhooked from the libraries that stay, and reported
when something else keeps them alive. Real libraries, no mocks."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import APP, edit, run_python, wait_until, write_package
from webtest import TestApp

import memento
from memento import leaks


def forget(*names: str) -> dict[str, ModuleType]:
    """Take modules out of sys.modules as a reload does; returns the generation."""
    generation = {name: sys.modules.pop(name) for name in names}
    for name in names:
        parent, _, child = name.rpartition(".")
        if parent in sys.modules and getattr(sys.modules[parent], child, None) is generation[name]:
            delattr(sys.modules[parent], child)
    return generation


def fds_to(path: Path) -> int:
    """How many descriptors of this process are open on ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:
            pass
    return count


SQLALCHEMY = """\
from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import Session

engine = create_engine({url!r})
COMMITS = []

def before_commit(session):
    COMMITS.append({label!r})

event.listen(Session, "before_commit", before_commit)

class Searchable:
    @classmethod
    def before_flush(cls, session, context, instances):
        COMMITS.append("flush")

event.listen(Session, "before_flush", Searchable.before_flush)
"""


def test_sqlalchemy_listeners_go_and_engines_are_disposed(make_package, tmp_path):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.orm import Session

    url = f"sqlite:///{tmp_path / 'app.db'}"
    pkg = make_package(
        "shop", {"__init__.py": "", "models.py": SQLALCHEMY.format(url=url, label="old")}
    )
    old = importlib.import_module("shop.models")
    with old.engine.connect() as connection:
        connection.execute(sqlalchemy.text("select 1"))
    assert fds_to(tmp_path / "app.db") == 1  # pooled
    old_commits = old.COMMITS
    generation = forget("shop.models")
    del old
    # a label of another length: the old bytecode cannot pass for the new source
    edit(pkg / "models.py", SQLALCHEMY.format(url=url, label="newer"))
    new = importlib.import_module("shop.models")

    assert leaks.unhook(generation) == 3  # two listeners, one engine

    with Session(new.engine) as session:
        session.commit()
    assert new.COMMITS == ["newer"]
    assert old_commits == []
    assert fds_to(tmp_path / "app.db") == 0
    sqlalchemy.event.remove(Session, "before_commit", new.before_commit)
    sqlalchemy.event.remove(Session, "before_flush", new.Searchable.before_flush)


def test_an_engine_a_module_that_stays_holds_is_not_disposed(make_package, tmp_path):
    pytest.importorskip("sqlalchemy")
    url = f"sqlite:///{tmp_path / 'app.db'}"
    make_package(
        "shop",
        {
            "__init__.py": "",
            "db.py": f"from sqlalchemy import create_engine\nengine = create_engine({url!r})\n",
            "models.py": "from shop.db import engine\n",
        },
    )
    importlib.import_module("shop.models")
    engine = sys.modules["shop.db"].engine
    engine.connect().close()
    pool = engine.pool
    generation = forget("shop.models")
    assert leaks.unhook(generation) == 0
    assert engine.pool is pool  # dispose() would have replaced it
    engine.dispose()


BLINKER = """\
import blinker
import flask
from shop.signals import order_paid

def on_paid(sender, **extra):
    RECEIVED.append(sender)

def on_request(sender, **extra):
    pass

RECEIVED = []
order_paid.connect(on_paid, weak=False)
blinker.signal("memento-test").connect(on_paid)
flask.request_started.connect(on_request, weak=False)
"""


def test_blinker_receivers_of_the_forgotten_generation_are_disconnected(make_package):
    blinker = pytest.importorskip("blinker")
    flask = pytest.importorskip("flask")
    make_package(
        "shop",
        {
            "__init__.py": "",
            "signals.py": "import blinker\norder_paid = blinker.Signal()\n",
            "hooks.py": BLINKER,
        },
    )
    importlib.import_module("shop.hooks")
    signal = sys.modules["shop.signals"].order_paid
    started = len(flask.request_started.receivers)
    generation = forget("shop.hooks")
    importlib.import_module("shop.hooks")

    assert leaks.unhook(generation) == 3

    new = sys.modules["shop.hooks"]
    assert list(signal.receivers.values()) == [new.on_paid]
    signal.send("order 1")
    assert new.RECEIVED == ["order 1"]
    assert len(blinker.signal("memento-test").receivers) == 1
    assert len(flask.request_started.receivers) == started
    flask.request_started.disconnect(new.on_request)


DJANGO = """\
from shop.signals import order_paid

def on_paid(sender, **kwargs):
    RECEIVED.append(sender)

RECEIVED = []
order_paid.connect(on_paid, weak=False)
order_paid.connect(on_paid, dispatch_uid="weakly", weak=True)
"""


def test_django_receivers_of_the_forgotten_generation_are_disconnected(make_package):
    pytest.importorskip("django")
    make_package(
        "shop",
        {
            "__init__.py": "",
            "signals.py": "from django.dispatch import Signal\norder_paid = Signal()\n",
            "hooks.py": DJANGO,
        },
    )
    importlib.import_module("shop.hooks")
    signal = sys.modules["shop.signals"].order_paid
    generation = forget("shop.hooks")
    importlib.import_module("shop.hooks")

    assert leaks.unhook(generation) == 2

    new = sys.modules["shop.hooks"]
    assert len(signal.receivers) == 2
    signal.send(sender="order 1")
    assert new.RECEIVED == ["order 1", "order 1"]


FINALIZE = """\
import weakref
from shop.keeper import THING

CLOSED = []

def close():
    CLOSED.append(True)

FIN = weakref.finalize(THING, close)
LIBRARY = weakref.finalize(THING, CLOSED.append, "library")
"""


def test_finalizers_of_forgotten_code_are_detached(make_package):
    make_package(
        "shop",
        {
            "__init__.py": "",
            "keeper.py": "class Thing:\n    pass\nTHING = Thing()\n",
            "cleanup.py": FINALIZE,
        },
    )
    old = importlib.import_module("shop.cleanup")
    fin, library = old.FIN, old.LIBRARY
    generation = forget("shop.cleanup")
    del old

    assert leaks.unhook(generation) == 1

    assert not fin.alive
    assert library.alive  # its callback is a library function: not the generation's
    library.detach()


def test_forgotten_tells_the_generation_by_identity_not_by_name(make_package):
    view = "class View:\n    def get(self):\n        pass\n"
    make_package("shop", {"__init__.py": "", "views.py": view})
    old = importlib.import_module("shop.views")
    generation = forget("shop.views")
    new = importlib.import_module("shop.views")
    forgotten = leaks.Forgotten(generation)
    assert forgotten.owns(old.View) and forgotten.owns(old.View().get) and forgotten.owns(old)
    assert not forgotten.owns(new.View)
    assert not forgotten.owns(new.View().get)
    assert not forgotten.owns(new)
    assert not forgotten.owns(len)


SIGNAL_APP = """\
from shop.signals import ping

def on_ping(sender, **extra):
    pass

ping.connect(on_ping, weak=False)
""" + APP


def test_a_failed_reload_keeps_the_old_generations_receivers(make_package):
    pytest.importorskip("blinker")
    pkg = make_package(
        "shop",
        {
            "__init__.py": "",
            "signals.py": "import blinker\nping = blinker.Signal()\n",
            "wsgi.py": SIGNAL_APP % "v1",
        },
    )
    middleware = memento.Mori(
        "shop.wsgi:app", interval=0, events=False, on_error="keep", keep=["shop.signals"]
    )
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "v1"
    ping = sys.modules["shop.signals"].ping
    edit(pkg / "wsgi.py", "def app(:\n")
    assert app.get("/").text == "v1"
    assert list(ping.receivers.values()) == [sys.modules["shop.wsgi"].on_ping]
    edit(pkg / "wsgi.py", SIGNAL_APP % "v2")
    assert app.get("/").text == "v2"
    assert list(ping.receivers.values()) == [sys.modules["shop.wsgi"].on_ping]


REGISTRY = "HANDLERS = []\n"
PLUGIN = """\
from shop import registry

def greet():
    return {text!r}

registry.HANDLERS.append(greet)
"""


def test_a_registry_that_keeps_old_generations_is_named(make_package, caplog):
    pkg = make_package(
        "shop",
        {
            "__init__.py": "",
            "registry.py": REGISTRY,
            "plugin.py": PLUGIN.format(text="hello"),
            "wsgi.py": "import shop.plugin\n" + APP % "v1",
        },
    )
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False, keep=["shop.registry"])
    app = TestApp(middleware, lint=True)
    app.get("/")
    with caplog.at_level(logging.WARNING, logger="memento"):
        edit(pkg / "plugin.py", PLUGIN.format(text="hi"))
        app.get("/")
        wait_until(lambda: middleware.stats.alive == 1, timeout=10, what="the check")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("generation 1 is still alive: shop.registry.HANDLERS")
    assert "function shop.plugin.greet" in warnings[0]
    assert "__memento_unload__" in warnings[0]


def test_a_generation_that_is_garbage_is_not_counted(make_package, caplog):
    make_package("shop", {"__init__.py": "", "views.py": "class View:\n    pass\n"})
    importlib.import_module("shop.views")
    watch = leaks.Leaks(delay=0)
    watch.forgotten(forget("shop.views"), 1)
    with caplog.at_level(logging.WARNING, logger="memento"):
        assert watch.check() == 0
    watch.close()
    assert "still alive" not in caplog.text


def test_a_generation_just_forgotten_waits_for_a_later_check(make_package, caplog):
    make_package("shop", {"__init__.py": "", "views.py": "class View:\n    pass\n"})
    importlib.import_module("shop.views")
    generation = forget("shop.views")  # still referenced, as during a reload
    watch = leaks.Leaks(delay=60)
    watch.forgotten(generation, 1)
    with caplog.at_level(logging.WARNING, logger="memento"):
        assert watch.check() == 0
    watch.close()
    assert "still alive" not in caplog.text


# -- the application shape of issue 11, reloaded 300 times -----------------------

FACTORY = """\
from flask import Flask
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
login = LoginManager()


def create_app():
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "dev"
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + {db_path!r}
    db.init_app(app)
    login.init_app(app)
    from . import auth, blog, main, search, users
    for module in (auth, blog, main, search, users):
        app.register_blueprint(module.bp)
    with app.app_context():
        db.create_all()
        if db.session.scalars(db.select(models.User)).first() is None:
            db.session.add(models.User(name="ann"))
            db.session.commit()
    return app


from . import models  # noqa: E402
"""
MODELS = """\
from flask_login import UserMixin

from . import db, login


class SearchableMixin:
    @classmethod
    def before_commit(cls, session):
        session._changes = list(session.new)


class User(SearchableMixin, UserMixin, db.Model):
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(64), unique=True)


class Post(SearchableMixin, db.Model):
    id = db.Column(db.Integer, primary_key=True)
    body = db.Column(db.String(140))
    user_id = db.Column(db.Integer, db.ForeignKey("user.id"))


@login.user_loader
def load_user(user_id):
    return db.session.get(User, int(user_id))


db.event.listen(db.session, "before_commit", SearchableMixin.before_commit)
"""
BLUEPRINT = """\
from flask import Blueprint
from flask_login import current_user, login_required, login_user

from . import db
from .models import Post, User

bp = Blueprint("{name}", __name__, url_prefix="/{name}")
MARK = "v0"


@bp.route("/")
@login_required
def index():
    if bp.name == "blog":
        db.session.add(Post(body="hello", user_id=current_user.id))
        db.session.commit()
    posts = db.session.scalars(db.select(Post).filter_by(user_id=current_user.id)).all()
    return "%s %s %d %s" % (bp.name, current_user.name, len(posts), MARK)


@bp.route("/login")
def login():
    login_user(db.session.scalars(db.select(User).filter_by(name="ann")).one())
    return "hello"
"""
RELOADS = """\
import gc, os, sys, time
from pathlib import Path
from webtest import TestApp
import memento

def rss_mb():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def fds():
    return len(os.listdir("/proc/self/fd"))

def users_alive():
    return sum(1 for o in gc.get_objects() if isinstance(o, type)
               and o.__name__ == "User" and o.__module__ == "shop.models")

middleware = memento.Mori("shop.wsgi:app", interval=0, events=False)
app = TestApp(middleware)
app.get("/auth/login")
app.get("/blog/")
gc.collect()
rss, fd = rss_mb(), fds()
blog = Path("shop/blog.py")
started = time.perf_counter()
for n in range(1, 301):
    source = blog.read_text().replace(f'MARK = "v{n - 1}"', f'MARK = "v{n}"')
    blog.write_text(source)
    assert app.get("/blog/").text.endswith(f" v{n}")
    app.get("/users/")
elapsed = time.perf_counter() - started
gc.collect()
print(f"{rss_mb() - rss:.1f} MB {fds() - fd} fds {users_alive()} users "
      f"{middleware.stats.reloads} reloads {elapsed:.1f} s")
middleware.close()
"""


def test_a_flask_sqlalchemy_app_reloaded_300_times_does_not_grow(tmp_path):
    for module in ("flask_sqlalchemy", "flask_login"):
        pytest.importorskip(module)
    files = {
        "__init__.py": FACTORY.format(db_path=str(tmp_path / "app.db")),
        "models.py": MODELS,
        "wsgi.py": "from shop import create_app\n\napp = create_app()\n",
    }
    for name in ("auth", "blog", "main", "search", "users"):
        files[f"{name}.py"] = BLUEPRINT.replace("{name}", name)
    write_package(tmp_path, "shop", files)
    result = run_python(RELOADS, tmp_path, timeout=240)
    words = result.stdout.split()
    rss, fds, users, reloads = float(words[0]), int(words[2]), int(words[4]), int(words[6])
    assert reloads == 300, result.stdout
    assert rss < 20, result.stdout
    assert fds <= 2, result.stdout
    assert users <= 2, result.stdout  # the generation serving, at most one old one


def test_assassin_warns_when_a_module_outside_its_targets_changes(make_package, caplog):
    make_package("settings_mod", {"__init__.py": "GREETING = 'hello'\n"})
    pkg = make_package(
        "shop",
        {"__init__.py": "", "wsgi.py": "import settings_mod\n" + APP % "v1"},
    )
    middleware = memento.Assassin("shop.wsgi:app", ["shop"], interval=0, events=False)
    app = TestApp(middleware, lint=True)
    app.get("/")
    with caplog.at_level(logging.WARNING, logger="memento"):
        app.get("/")
        assert "settings_mod" not in caplog.text  # nothing changed, nothing said
        edit(pkg.parent / "settings_mod" / "__init__.py", "GREETING = 'hi'\n")
        app.get("/")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "module settings_mod is not among the targets shop" in warnings[0]
    assert "--assassin settings_mod" in warnings[0] and "Mori" in warnings[0]
