from __future__ import annotations

import logging
import sys

import pytest
from helpers import APP, edit
from webtest import TestApp

import memento


def poll_app(statement: str, **options: object) -> memento.Mori:
    return memento.Mori(statement, interval=0, events=False, **options)


def test_edit_is_served_on_next_request(make_package):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    mori = poll_app("shop.wsgi:app")
    app = TestApp(mori, lint=True)
    assert app.get("/").text == "v1"
    edit(pkg / "wsgi.py", APP % "v2")
    assert app.get("/").text == "v2"
    assert mori.stats.reloads == 1
    assert mori.stats.generation == 2


def test_nothing_is_reloaded_without_a_change(make_package):
    make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    mori = poll_app("shop.wsgi:app")
    app = TestApp(mori, lint=True)
    app.get("/")
    module = sys.modules["shop.wsgi"]
    for _ in range(3):
        app.get("/")
    assert sys.modules["shop.wsgi"] is module
    assert mori.stats.reloads == 0


def test_edit_of_an_imported_module_is_served(make_package):
    pkg = make_package(
        "shop",
        {
            "__init__.py": "",
            "views.py": "TEXT = 'old'\n",
            "wsgi.py": """\
                from shop import views

                def app(environ, start_response):
                    start_response("200 OK", [("Content-Type", "text/plain")])
                    return [views.TEXT.encode()]
            """,
        },
    )
    app = TestApp(poll_app("shop.wsgi:app"), lint=True)
    assert app.get("/").text == "old"
    edit(pkg / "views.py", "TEXT = 'new'\n")
    assert app.get("/").text == "new"


def test_app_is_imported_on_first_request_not_at_construction(make_package):
    make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    mori = poll_app("shop.wsgi:app")
    assert "shop.wsgi" not in sys.modules
    assert mori.new_modules == set()
    TestApp(mori).get("/")
    assert {"shop", "shop.wsgi"} <= mori.new_modules
    assert "shop" not in mori.previous_modules


def test_never_forgets_stdlib_installed_memento_or_main(make_package):
    make_package(
        "shop",
        {
            "__init__.py": "",
            "wsgi.py": "import json, wave, webtest, memento.gate\n" + APP % "v1",
        },
    )
    sys.modules.pop("wave", None)
    mori = poll_app("shop.wsgi:app")
    TestApp(mori).get("/")
    assert "wave" in sys.modules
    assert "wave" not in mori.new_modules
    assert not any(name.startswith(("memento", "webtest", "json")) for name in mori.new_modules)
    assert "__main__" not in mori.new_modules


def test_keep_names_and_their_submodules_stay(make_package):
    pkg = make_package(
        "shop",
        {
            "__init__.py": "",
            "db/__init__.py": "import itertools\nCOUNTER = itertools.count()\n",
            "db/engine.py": "ENGINE = object()\n",
            "wsgi.py": """\
                import shop.db.engine
                from shop import db

                def app(environ, start_response):
                    start_response("200 OK", [("Content-Type", "text/plain")])
                    return [f"{next(db.COUNTER)} {id(shop.db.engine.ENGINE)}".encode()]
            """,
        },
    )
    mori = poll_app("shop.wsgi:app", keep=["shop.db"])
    app = TestApp(mori, lint=True)
    count, engine = app.get("/").text.split()
    edit(pkg / "wsgi.py", (pkg / "wsgi.py").read_text() + "\n# edited\n")
    count2, engine2 = app.get("/").text.split()
    assert mori.stats.reloads == 1
    assert (int(count2), engine2) == (int(count) + 1, engine)
    assert "shop.db.engine" not in mori.new_modules


def test_turn_on_takes_a_fresh_snapshot(make_package):
    make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    make_package("late", {"__init__.py": ""})
    mori = poll_app("shop.wsgi:app", turn_on=False)
    assert not mori.reloading
    app = TestApp(mori, lint=True)
    assert app.get("/").text == "v1"
    mori.turn_on()
    assert mori.reloading
    assert "shop.wsgi" not in mori.previous_modules
    assert mori.new_modules == {"shop", "shop.wsgi"}
    import late  # noqa: F401

    assert mori.new_modules == {"shop", "shop.wsgi", "late"}


def test_turned_off_it_passes_through_without_reloading(make_package):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    mori = poll_app("shop.wsgi:app")
    app = TestApp(mori, lint=True)
    assert app.get("/").text == "v1"
    mori.turn_off()
    edit(pkg / "wsgi.py", APP % "v2")
    assert app.get("/").text == "v1"
    mori.turn_on()
    mori.reload()
    assert app.get("/").text == "v2"


def test_reload_on_request_reloads_every_request(make_package):
    make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    mori = memento.Mori("shop.wsgi:app", reload_on="request")
    app = TestApp(mori, lint=True)
    modules = []
    for _ in range(3):
        app.get("/")
        modules.append(sys.modules["shop.wsgi"])
    assert len({id(module) for module in modules}) == 3
    assert mori.stats.reloads == 2


def test_manual_ignores_edits_until_reload(make_package):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    mori = memento.Mori("shop.wsgi:app", reload_on="manual")
    app = TestApp(mori, lint=True)
    assert app.get("/").text == "v1"
    edit(pkg / "wsgi.py", APP % "v2")
    assert app.get("/").text == "v1"
    mori.reload()
    assert app.get("/").text == "v2"


def test_manual_reloads_when_a_trigger_file_is_touched(make_package, tmp_path):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    trigger = tmp_path / "reload.trigger"
    trigger.write_text("")
    mori = memento.Mori(
        "shop.wsgi:app", reload_on="manual", watch=[str(trigger)], interval=0, events=False
    )
    app = TestApp(mori, lint=True)
    assert app.get("/").text == "v1"
    edit(pkg / "wsgi.py", APP % "v2")
    assert app.get("/").text == "v1"
    edit(trigger, "now")
    assert app.get("/").text == "v2"


def test_one_info_line_per_reload(make_package, caplog):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    app = TestApp(poll_app("shop.wsgi:app"), lint=True)
    app.get("/")
    edit(pkg / "wsgi.py", APP % "v2")
    with caplog.at_level(logging.INFO, logger="memento"):
        app.get("/")
        app.get("/")
    lines = [r for r in caplog.records if r.name == "memento" and r.levelno == logging.INFO]
    assert len(lines) == 1
    assert "reloaded 2 modules" in lines[0].getMessage()
    assert "wsgi.py" in lines[0].getMessage()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("reload_on", "sometimes"),
        ("interval", -1),
        ("scope", "most"),
        ("on_error", "explode"),
        ("watch", ["/no/such/dir/anywhere"]),
    ],
)
def test_bad_option_names_the_value(make_package, option, value):
    with pytest.raises(ValueError, match=option) as info:
        memento.Mori("shop.wsgi:app", **{option: value})
    shown = value[0] if isinstance(value, list) else value
    assert repr(shown) in str(info.value) or str(shown) in str(info.value)


def test_malformed_resolver_is_rejected_before_importing(make_package):
    before = set(sys.modules)
    with pytest.raises(ValueError, match="shop.wsgi:app\\("):
        memento.Mori("shop.wsgi:app(")
    assert set(sys.modules) == before
