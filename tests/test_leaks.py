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
from helpers import APP, edit, wait_until
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
    edit(pkg / "models.py", SQLALCHEMY.format(url=url, label="new"))
    new = importlib.import_module("shop.models")

    assert leaks.unhook(generation) == 3  # two listeners, one engine

    with Session(new.engine) as session:
        session.commit()
    assert new.COMMITS == ["new"]
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
