from __future__ import annotations

import sys

import pytest
from helpers import APP, edit
from webtest import TestApp

import memento

WSGI = """\
from shop import views, db

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{views.TEXT} {db.CONNECTIONS}".encode()]
"""


def make_shop(make_package):
    return make_package(
        "shop",
        {
            "__init__.py": "",
            "views.py": "TEXT = 'old'\n",
            "db.py": "CONNECTIONS = []\nCONNECTIONS.append(1)\n",
            "wsgi.py": WSGI,
        },
    )


def test_targets_are_forgotten_and_exceptions_kept(make_package):
    pkg = make_shop(make_package)
    assassin = memento.Assassin(
        "shop.wsgi:app", ["shop"], exceptions=["shop.db"], interval=0, events=False
    )
    app = TestApp(assassin, lint=True)
    assert app.get("/").text == "old [1]"
    db = sys.modules["shop.db"]
    edit(pkg / "views.py", "TEXT = 'new'\n")
    assert app.get("/").text == "new [1]"
    assert sys.modules["shop.db"] is db
    assert sys.modules["shop"].db is db
    assert assassin.stats.last is not None
    assert set(assassin.stats.last.forgotten) == {"shop", "shop.views", "shop.wsgi"}


def test_attributes(make_package):
    assassin = memento.Assassin("shop.wsgi:app", "shop other", "shop.db")
    assert assassin.targets == ("shop", "other")
    assert assassin.exceptions == ("shop.db",)


def test_modules_outside_targets_are_not_forgotten(make_package):
    make_package("helper", {"__init__.py": "VALUE = 1\n"})
    pkg = make_package(
        "shop", {"__init__.py": "", "wsgi.py": "import helper\n" + APP % "v1"}
    )
    app = TestApp(memento.Assassin("shop.wsgi:app", ["shop"], interval=0, events=False))
    app.get("/")
    helper = sys.modules["helper"]
    edit(pkg / "wsgi.py", "import helper\n" + APP % "v2")
    assert app.get("/").text == "v2"
    assert sys.modules["helper"] is helper


@pytest.mark.parametrize("target", ["os", "os.path", "json", "sys", "memento", "memento.base"])
def test_refuses_stdlib_builtin_and_memento_targets(target):
    with pytest.raises(ValueError, match=repr(target).replace(".", "\\.")):
        memento.Assassin("shop.wsgi:app", [target])


def test_refuses_no_targets_and_bad_names():
    with pytest.raises(ValueError, match="targets"):
        memento.Assassin("shop.wsgi:app", [])
    with pytest.raises(ValueError, match="'shop-app'"):
        memento.Assassin("shop.wsgi:app", ["shop-app"])
