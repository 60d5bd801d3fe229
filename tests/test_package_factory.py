"""scope="dependents" with the application's factory in a package's ``__init__``."""

from __future__ import annotations

import sys

from helpers import edit
from webtest import TestApp

import memento

INIT = '''\
import shop.models

NAME = shop.models.NAME  # needs shop.models bound on this package as it runs


def create_app():
    from . import views

    def app(environ, start_response):
        body = ("%s %s %s" % (views.text(), NAME, shop.models.COUNT)).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    return app
'''

MODELS = "NAME = 'models'\nCOUNT = 0\n"
VIEWS = "from .models import NAME\n\n\ndef text():\n    return %r\n"


def test_changed_package_keeps_its_unchanged_submodules(make_package):
    pkg = make_package(
        "shop", {"__init__.py": INIT, "models.py": MODELS, "views.py": VIEWS % "v1"}
    )
    with memento.Mori("shop:create_app()", scope="dependents", interval=0, events=False) as mw:
        app = TestApp(mw, lint=True)
        assert app.get("/").text == "v1 models 0"
        models, views = sys.modules["shop.models"], sys.modules["shop.views"]
        models.COUNT = 1  # state that survives a reload of the package
        edit(pkg / "__init__.py", INIT.replace("%s %s %s", "%s/%s/%s"))
        assert app.get("/").text == "v1/models/1"
        assert mw.stats.last.forgotten == ("shop",)
        assert sys.modules["shop.models"] is models and sys.modules["shop.views"] is views
        assert sys.modules["shop"].models is models and sys.modules["shop"].views is views


def test_view_edit_keeps_the_models_of_a_package_factory(make_package):
    pkg = make_package(
        "shop", {"__init__.py": INIT, "models.py": MODELS, "views.py": VIEWS % "v1"}
    )
    with memento.Mori("shop:create_app()", scope="dependents", interval=0, events=False) as mw:
        app = TestApp(mw, lint=True)
        app.get("/")
        models = sys.modules["shop.models"]
        edit(pkg / "views.py", VIEWS % "v2")
        assert app.get("/").text == "v2 models 0"
        assert set(mw.stats.last.forgotten) == {"shop", "shop.views"}
        assert sys.modules["shop.models"] is models
        assert sys.modules["shop"].models is models
        assert sys.modules["shop"].__loader__.__class__.__name__ == "SourceFileLoader"


def test_failed_package_reload_keeps_the_submodules_bound(make_package):
    pkg = make_package(
        "shop", {"__init__.py": INIT, "models.py": MODELS, "views.py": VIEWS % "v1"}
    )
    with memento.Mori(
        "shop:create_app()", scope="dependents", interval=0, events=False, on_error="keep"
    ) as mw:
        app = TestApp(mw, lint=True)
        app.get("/")
        models = sys.modules["shop.models"]
        edit(pkg / "__init__.py", INIT + "raise RuntimeError('broken')\n")
        assert app.get("/").text == "v1 models 0"
        assert sys.modules["shop"].models is models
        edit(pkg / "__init__.py", INIT.replace("%s %s %s", "%s+%s+%s"))
        assert app.get("/").text == "v1+models+0"
        assert sys.modules["shop.models"] is models
