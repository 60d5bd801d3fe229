"""The pytest recipe of docs/integrations.rst: one Mori for all tests, fresh code for each.

A test may change the application's module globals at will (no monkeypatch,
no undo): the next test gets freshly imported modules.
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from webtest import TestApp

import memento

FILES = {
    "__init__.py": "",
    "settings.py": "GREETING = 'hello'\nVISITS = []\n",
    "wsgi.py": """\
        from recipe_shop import settings


        def app(environ, start_response):
            settings.VISITS.append(environ["PATH_INFO"])
            body = f"{settings.GREETING} ({len(settings.VISITS)} visits)".encode()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [body]
    """,
}


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The application's code: a package on sys.path for this module's tests."""
    root = tmp_path_factory.mktemp("recipe")
    for relpath, source in FILES.items():
        path = root / "recipe_shop" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    yield root
    sys.path.remove(str(root))
    prefix = os.path.join(str(root), "")
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(prefix):
            del sys.modules[name]


# -- the recipe, as docs/integrations.rst shows it (there scope="session") ----


@pytest.fixture(scope="module")
def reloader(shop_dir: Path) -> Iterator[memento.Mori]:
    """One middleware for all tests, turned on only while a test runs."""
    with memento.Mori("recipe_shop.wsgi:app", turn_on=False, reload_on="manual") as mori:
        yield mori


@pytest.fixture
def fresh_app(reloader: memento.Mori) -> Iterator[TestApp]:
    """The application, with the modules the last test used forgotten."""
    reloader.turn_on()  # snapshot: what is imported from now on belongs to this test
    reloader.reload()  # the first request imports the application afresh
    yield TestApp(reloader, lint=True)
    reloader.turn_off()


# -- two tests that must not see each other's changes -------------------------


def test_a_greeting_can_be_changed(fresh_app):
    from recipe_shop import settings

    fresh_app.get("/")
    settings.GREETING = "bonjour"
    assert fresh_app.get("/a").text == "bonjour (2 visits)"


def test_b_does_not_see_the_other_tests_change(fresh_app):
    assert fresh_app.get("/b").text == "hello (1 visits)"
    from recipe_shop import settings

    settings.GREETING = "hallo"
    assert fresh_app.get("/b").text == "hallo (2 visits)"


def test_c_neither(fresh_app):
    assert fresh_app.get("/c").text == "hello (1 visits)"
