"""The pytest recipe of README.rst (Integrations): one Mori for all tests, fresh code for each.

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
    "extra.py": "COLOURS = ['red']\n",
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


# -- the recipe, as README.rst (Integrations) shows it (there scope="session") ----


@pytest.fixture(scope="module")
def reloader(shop_dir: Path) -> Iterator[memento.Mori]:
    """One middleware for all tests, turned on only while a test runs."""
    with memento.Mori("recipe_shop.wsgi:app", turn_on=False, events=False) as mori:
        yield mori


@pytest.fixture
def fresh_app(reloader: memento.Mori) -> Iterator[TestApp]:
    """The application; what the test changed in its modules is forgotten after it."""
    reloader.turn_on()  # snapshot: what is imported from now on belongs to this test
    yield TestApp(reloader, lint=True)
    reloader.reload()  # the next request imports the application afresh
    reloader.turn_off()


# -- tests that must not see each other's changes, in any order -----------------


def test_a_module_global_changed_here_is_not_seen_elsewhere(fresh_app):
    assert fresh_app.get("/").text == "hello (1 visits)"
    from recipe_shop import settings

    settings.GREETING = "bonjour"
    assert fresh_app.get("/").text == "bonjour (2 visits)"


def test_a_module_imported_here_is_forgotten_after_the_test(fresh_app):
    assert fresh_app.get("/").text == "hello (1 visits)"
    # imported after the reload (the test's first request), before its last
    # request: memento adopts it into the application's generation
    from recipe_shop import extra, settings

    assert extra.COLOURS == ["red"]
    extra.COLOURS.append("blue")
    settings.VISITS.extend(["/x", "/y"])
    assert fresh_app.get("/").text == "hello (4 visits)"


def test_reloading_is_off_between_tests(reloader):
    assert not reloader.reloading
