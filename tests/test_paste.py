"""Real paste.deploy loadapp on real .ini files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import APP, edit, fetch, wait_until
from paste.deploy import loadapp
from webtest import TestApp

import memento


def write_ini(tmp_path: Path, text: str) -> str:
    ini = tmp_path / "app.ini"
    ini.write_text(textwrap.dedent(text))
    return f"config:{ini}"


@pytest.fixture
def shop(make_package):
    return make_package(
        "shop",
        {"__init__.py": "", "db.py": "CONN = object()\n",
         "wsgi.py": "import shop.db\n" + APP % "v1"},
    )


def test_assassin_app_with_every_key(shop, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    uri = write_ini(tmp_path, f"""\
        [app:main]
        use = egg:memento#assassin
        app = shop.wsgi:app
        packages = shop, other
        exceptions = shop.db
        reload = true
        reload_on = change
        interval = 0
        watch = {templates}
        on_error = keep
        show_tracebacks = false
        events = false
    """)
    app = loadapp(uri)
    assert isinstance(app, memento.Assassin)
    assert app.targets == ("shop", "other")
    assert app.exceptions == ("shop.db",)
    assert app.options.on_error == "keep"
    assert app.options.show_tracebacks is False
    assert app.options.watch == (str(templates),)
    test = TestApp(app, lint=True)
    assert test.get("/").text == "v1"
    edit(shop / "wsgi.py", "import shop.db\n" + APP % "v2")
    assert test.get("/").text == "v2"


def test_mori_app_keep_and_reload_off(shop, tmp_path):
    uri = write_ini(tmp_path, """\
        [app:main]
        use = egg:memento#mori
        app = shop.wsgi:app
        keep = shop.db
        reload = off
    """)
    app = loadapp(uri)
    assert isinstance(app, memento.Mori)
    assert app.options.keep == ("shop.db",)
    assert not app.reloading


@pytest.mark.parametrize("policy", ["mori", "assassin"])
def test_filter_picks_up_edits_of_the_wrapped_application(shop, tmp_path, policy):
    uri = write_ini(tmp_path, f"""\
        [pipeline:main]
        pipeline = reload shop

        [filter:reload]
        use = egg:memento#{policy}
        interval = 0
        events = no

        [app:shop]
        paste.app_factory = shop.factory:make_app
    """)
    (shop / "factory.py").write_text("def make_app(global_conf, **settings):\n"
                                     "    from shop.wsgi import app\n    return app\n")
    app = loadapp(uri)
    assert app.resolver.statement == "shop.wsgi:app"
    test = TestApp(app, lint=True)
    assert test.get("/").text == "v1"
    edit(shop / "wsgi.py", "import shop.db\n" + APP % "v2")
    assert test.get("/").text == "v2"


def test_filter_cannot_name_a_factory_made_application(shop, tmp_path):
    uri = write_ini(tmp_path, """\
        [pipeline:main]
        pipeline = reload shop

        [filter:reload]
        use = egg:memento#mori

        [app:shop]
        paste.app_factory = shop.factory:make_app
    """)
    (shop / "factory.py").write_text(
        "def make_app(global_conf, **settings):\n"
        "    def app(environ, start_response):\n        return []\n    return app\n"
    )
    with pytest.raises(ValueError, match="^app: cannot name"):
        loadapp(uri)


@pytest.mark.parametrize(
    ("key", "value"),
    [("reload", "perhaps"), ("interval", "-3"), ("reload_on", "sometimes"),
     ("on_error", "shout"), ("show_tracebacks", "maybe"), ("colour", "blue"),
     ("watch", "/no/such/dir")],
)
def test_bad_value_names_the_key(shop, tmp_path, key, value):
    uri = write_ini(tmp_path, f"""\
        [app:main]
        use = egg:memento#mori
        app = shop.wsgi:app
        {key} = {value}
    """)
    with pytest.raises(ValueError, match=f"^{key}"):
        loadapp(uri)


def test_ini_served_by_waitress(shop, tmp_path, live_server):
    uri = write_ini(tmp_path, """\
        [app:main]
        use = egg:memento#assassin
        app = shop.wsgi:app
        interval = 0
    """)
    url = live_server(loadapp(uri))
    assert fetch(url) == "v1"
    edit(shop / "wsgi.py", "import shop.db\n" + APP % "v2")
    wait_until(lambda: fetch(url) == "v2", what="the edit to be served")


def test_filter_with_an_app_key_names_a_factory_made_application(shop, tmp_path):
    uri = write_ini(tmp_path, """\
        [pipeline:main]
        pipeline = reload shop

        [filter:reload]
        use = egg:memento#assassin
        app = shop.wsgi:app
        interval = 0
        events = false

        [app:shop]
        paste.app_factory = shop.factory:make_app
    """)
    (shop / "factory.py").write_text(
        "def make_app(global_conf, **settings):\n"
        "    def app(environ, start_response):\n        return []\n    return app\n"
    )
    app = loadapp(uri)
    assert app.resolver.statement == "shop.wsgi:app"
    assert TestApp(app, lint=True).get("/").text == "v1"
