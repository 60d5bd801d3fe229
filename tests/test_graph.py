from __future__ import annotations

import importlib
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest
from helpers import edit

from memento import graph
from memento.modules import covers

Write = Callable[[dict[str, str]], Path]

APP = """\
class App:
    def __init__(self):
        self.routes = {}

    def route(self, path):
        def register(view):
            self.routes[path] = view
            return view
        return register

    def __call__(self, environ, start_response):
        start_response("200 OK", [])
        return [b""]

app = App()
"""


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Write]:
    """Write files below tmp_path, importable; forget what the test imported afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)

    def write(files: dict[str, str]) -> Path:
        for relpath, source in files.items():
            path = tmp_path / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()
        return tmp_path

    yield write
    for modname in set(sys.modules) - before:
        del sys.modules[modname]


def owned(*names: str) -> dict[str, ModuleType]:
    """Import ``names``; the generation of every module loaded under their top-level names."""
    for name in names:
        importlib.import_module(name)
    tops = {name.partition(".")[0] for name in names}
    return {name: module for name, module in sys.modules.items() if covers(tops, name)}


_SHOP = {
    "shop/__init__.py": "",
    "shop/wsgi.py": """\
        from . import views, admin

        def app(environ, start_response):
            return views.index(environ, start_response)
        """,
    "shop/views.py": """\
        from .models import User

        def index(environ, start_response):
            start_response("200 OK", [])
            return [User.__name__.encode()]
        """,
    "shop/admin.py": "from . import util\n",
    "shop/models.py": """\
        from shop.db import connect

        class User:
            pass
        """,
    "shop/db.py": "def connect():\n    pass\n",
    "shop/util.py": "X = 1\n",
}
SHOP = {relpath: textwrap.dedent(source) for relpath, source in _SHOP.items()}


def test_leaf_edit_forgets_its_importers_and_the_app(write: Write) -> None:
    root = write(SHOP)
    generation = owned("shop.wsgi")
    edit(root / "shop/db.py", "def connect():\n    return 2\n")
    assert graph.to_forget(generation, [str(root / "shop/db.py")], "shop.wsgi") == {
        "shop.db",
        "shop.models",
        "shop.views",
        "shop.wsgi",
    }


def test_only_the_app_module_without_changes(write: Write) -> None:
    write(SHOP)
    generation = owned("shop.wsgi")
    assert graph.to_forget(generation, [], "shop.wsgi") == {"shop.wsgi"}


def test_relative_imports(write: Write) -> None:
    root = write(
        {
            "portal/__init__.py": "",
            "portal/core.py": "y = 1\n",
            "portal/wsgi.py": "from .web import views\n",
            "portal/web/__init__.py": "",
            "portal/web/forms.py": "",
            "portal/web/models.py": "class User:\n    pass\n",
            "portal/web/other.py": "",
            "portal/web/views.py": """\
                from ..core import y
                from . import forms
                from .models import User
                """,
        }
    )
    generation = owned("portal.wsgi", "portal.web.other")

    def forget(relpath: str) -> set[str] | None:
        return graph.to_forget(generation, [str(root / relpath)], "portal.wsgi")

    assert forget("portal/core.py") == {"portal.core", "portal.web.views", "portal.wsgi"}
    assert forget("portal/web/forms.py") == {"portal.web.forms", "portal.web.views", "portal.wsgi"}
    assert forget("portal/web/models.py") == {
        "portal.web.models",
        "portal.web.views",
        "portal.wsgi",
    }


def test_from_package_import_submodule_counts(write: Write) -> None:
    root = write(
        {
            "shop/__init__.py": "",
            "shop/wsgi.py": "def app(environ, start_response):\n    pass\n",
            "shop/db.py": "",
            "shop/util.py": "",
            "uses_from.py": "from shop import db\n",
            "uses_import.py": "import shop.db\n",
            "uses_util.py": "from shop import util\n",
        }
    )
    generation = owned("shop.wsgi", "uses_from", "uses_import", "uses_util")
    assert graph.to_forget(generation, [str(root / "shop/db.py")], "shop.wsgi") == {
        "shop.db",
        "uses_from",
        "uses_import",
        "shop.wsgi",
    }


def test_importing_a_name_of_a_package_does_not_depend_on_its_submodules(write: Write) -> None:
    root = write(
        {
            "shop/__init__.py": "VERSION = 1\n",
            "shop/util.py": "",
            "shop/wsgi.py": "from . import util\n",
            "about.py": "from shop import VERSION\n",
        }
    )
    generation = owned("shop.wsgi", "about")
    changed = [str(root / "shop/util.py")]
    assert graph.to_forget(generation, changed, "shop.wsgi") == {"shop.util", "shop.wsgi"}
    changed = [str(root / "shop/__init__.py")]
    assert graph.to_forget(generation, changed, "shop.wsgi") == {"shop", "shop.wsgi", "about"}


def test_a_changed_package_keeps_its_unchanged_submodules(write: Write) -> None:
    # They are bound on the new package before its __init__ runs (modules.binding).
    root = write(
        {
            **SHOP,
            "shop/api/__init__.py": "",
            "shop/api/v1.py": "",
            "shop/api/deep/__init__.py": "",
            "shop/api/deep/leaf.py": "",
        }
    )
    generation = owned("shop.wsgi", "shop.api.v1", "shop.api.deep.leaf")
    changed = [str(root / "shop/api/__init__.py")]
    assert graph.to_forget(generation, changed, "shop.wsgi") == {"shop.api", "shop.wsgi"}


def test_submodules_importing_a_changed_package_go_with_it(write: Write) -> None:
    root = write(
        {
            **SHOP,
            "shop/api/__init__.py": "db = object()\n",
            "shop/api/v1.py": "from . import db\n",
            "shop/api/v2.py": "from .v1 import db\n",
            "shop/api/v3.py": "",
        }
    )
    generation = owned("shop.wsgi", "shop.api.v1", "shop.api.v2", "shop.api.v3")
    changed = [str(root / "shop/api/__init__.py")]
    assert graph.to_forget(generation, changed, "shop.wsgi") == {
        "shop.api",
        "shop.api.v1",
        "shop.api.v2",
        "shop.wsgi",
    }


def test_a_changed_submodule_leaves_its_package(write: Write) -> None:
    root = write({**SHOP, "shop/api/__init__.py": "", "shop/api/v1.py": ""})
    generation = owned("shop.wsgi", "shop.api.v1")
    changed = [str(root / "shop/api/v1.py")]
    assert graph.to_forget(generation, changed, "shop.wsgi") == {"shop.api.v1", "shop.wsgi"}


def test_namespace_packages_have_no_imports(write: Write) -> None:
    root = write({"ns/part.py": "", "ns/wsgi.py": "from . import part\n"})
    generation = owned("ns.wsgi")
    assert "ns" in generation
    changed = [str(root / "ns/part.py")]
    assert graph.to_forget(generation, changed, "ns.wsgi") == {"ns.part", "ns.wsgi"}


def test_re_exports_are_caught_by_the_module_objects(write: Write) -> None:
    # vendor is not owned (kept across reloads), so the source of api shows
    # no import of shop.helpers; its globals do.
    root = write(
        {
            "shop/__init__.py": "",
            "shop/wsgi.py": "",
            "shop/helpers.py": "def helper():\n    pass\n",
            "shop/tools.py": "",
            "shop/api.py": "from vendor import helper\n",
            "shop/cli.py": "from vendor import tools\n",
            "vendor.py": "from shop.helpers import helper\nfrom shop import tools\n",
        }
    )
    generation = owned("shop.wsgi", "shop.api", "shop.cli")
    assert "vendor" not in generation

    def forget(relpath: str) -> set[str] | None:
        return graph.to_forget(generation, [str(root / relpath)], "shop.wsgi")

    assert forget("shop/helpers.py") == {"shop.helpers", "shop.api", "shop.wsgi"}
    assert forget("shop/tools.py") == {"shop.tools", "shop.cli", "shop.wsgi"}


@pytest.mark.parametrize("kind", ["template", "new module", "deleted", "not owned"])
def test_a_file_that_is_no_owned_module_cannot_tell(write: Write, kind: str) -> None:
    root = write({**SHOP, "templates/index.html": "<p>", "other.py": ""})
    generation = owned("shop.wsgi", "other")
    changed = {
        "template": root / "templates/index.html",
        "new module": root / "shop/new.py",
        "deleted": root / "shop/db.py",
        "not owned": root / "other.py",
    }[kind]
    if kind == "new module":
        write({"shop/new.py": ""})
    elif kind == "deleted":
        changed.unlink()
    elif kind == "not owned":
        del generation["other"]
    assert graph.to_forget(generation, [str(changed)], "shop.wsgi") is None


def test_an_app_module_that_is_not_owned_cannot_tell(write: Write) -> None:
    root = write({**SHOP, "wsgi.py": "from shop.wsgi import app\n"})
    generation = owned("wsgi", "shop.wsgi")
    del generation["wsgi"]
    assert graph.to_forget(generation, [str(root / "shop/db.py")], "wsgi") is None


def test_a_symlinked_path_is_the_same_file(write: Write, tmp_path: Path) -> None:
    write(SHOP)
    generation = owned("shop.wsgi")
    link = tmp_path.parent / (tmp_path.name + "-link")
    try:
        link.symlink_to(tmp_path, target_is_directory=True)
    except OSError:
        pytest.skip("no symbolic links here")
    try:
        changed = [str(link / "shop/util.py")]
        assert graph.to_forget(generation, changed, "shop.wsgi") == {
            "shop.util",
            "shop.admin",
            "shop.wsgi",
        }
    finally:
        link.unlink()


@pytest.mark.parametrize(
    "call",
    [
        "importlib.import_module(name)",
        "__import__(name)",
        "exec(name)",
        "eval(name)",
    ],
)
def test_a_dynamic_import_in_a_module_that_stays_cannot_tell(write: Write, call: str) -> None:
    root = write({**SHOP, "shop/util.py": f"import importlib\n\ndef load(name):\n    {call}\n"})
    generation = owned("shop.wsgi")
    assert graph.to_forget(generation, [str(root / "shop/db.py")], "shop.wsgi") is None


def test_a_dynamic_import_in_a_forgotten_function_is_sure(write: Write) -> None:
    wsgi = SHOP["shop/wsgi.py"] + "\ndef plugin(name):\n    return __import__(name)\n"
    root = write({**SHOP, "shop/wsgi.py": wsgi})
    generation = owned("shop.wsgi")
    assert graph.to_forget(generation, [str(root / "shop/db.py")], "shop.wsgi") is not None


def test_a_dynamic_import_run_on_import_cannot_tell(write: Write) -> None:
    wsgi = "import importlib\n" + SHOP["shop/wsgi.py"] + "importlib.import_module('shop.util')\n"
    root = write({**SHOP, "shop/wsgi.py": wsgi})
    generation = owned("shop.wsgi")
    assert graph.to_forget(generation, [str(root / "shop/db.py")], "shop.wsgi") is None


REGISTRY = """\
ITEMS = []
TABLE = {"a": 0}
COUNT = 0

def register(item):
    ITEMS.append(item)
    return item
"""


@pytest.mark.parametrize(
    "plugin",
    [
        "from . import registry\nregistry.ITEMS.append(1)\n",
        "from . import registry\nregistry.register(1)\n",
        "import reg.registry\nreg.registry.register(1)\n",
        "from .registry import register\nregister(1)\n",
        "from .registry import register\n@register\ndef view():\n    pass\n",
        "from . import registry\n@registry.register\nclass View:\n    pass\n",
        "from . import registry\nregistry.TABLE['a'] = 1\n",
        "from . import registry\nregistry.COUNT += 1\n",
        "from . import registry\nsetattr(registry, 'COUNT', 1)\n",
        "from . import registry\ndel registry.TABLE['a']\n",
        "from .registry import ITEMS\nITEMS += [1]\n",
        "from .registry import TABLE\nif True:\n    TABLE.update(a=1)\n",
        "from .registry import *\nregister(1)\n",
        "from . import registry\nclass View:\n    registry.register(1)\n",
    ],
)
def test_registering_into_a_module_that_stays_cannot_tell(write: Write, plugin: str) -> None:
    root = write(
        {
            "reg/__init__.py": "",
            "reg/registry.py": REGISTRY,
            "reg/plugin.py": plugin,
            "reg/wsgi.py": "from . import plugin\n",
        }
    )
    generation = owned("reg.wsgi")
    assert graph.to_forget(generation, [str(root / "reg/plugin.py")], "reg.wsgi") is None


@pytest.mark.parametrize(
    "plugin",
    [
        "from . import registry\n\ndef setup():\n    registry.register(1)\n",
        "from . import registry\nNAMES = [name.upper() for name in ('a', 'b')]\n",
        "from .registry import ITEMS\nlocal = []\nlocal.append(1)\n",
        "from . import registry\nx = lambda: registry.register(1)\n",
    ],
)
def test_registering_only_when_called_is_sure(write: Write, plugin: str) -> None:
    root = write(
        {
            "reg/__init__.py": "",
            "reg/registry.py": REGISTRY,
            "reg/plugin.py": plugin,
            "reg/wsgi.py": "from . import plugin\n",
        }
    )
    generation = owned("reg.wsgi")
    assert graph.to_forget(generation, [str(root / "reg/plugin.py")], "reg.wsgi") == {
        "reg.plugin",
        "reg.wsgi",
    }


def test_registering_into_a_module_forgotten_too_is_sure(write: Write) -> None:
    root = write(
        {
            "reg/__init__.py": "",
            "reg/registry.py": REGISTRY,
            "reg/plugin.py": "from . import registry\nregistry.register(1)\n",
            "reg/wsgi.py": "from . import plugin\n",
        }
    )
    generation = owned("reg.wsgi")
    changed = [str(root / "reg/registry.py")]
    assert graph.to_forget(generation, changed, "reg.wsgi") == {
        "reg.registry",
        "reg.plugin",
        "reg.wsgi",
    }


def test_routes_registered_on_the_app_are_sure(write: Write) -> None:
    root = write(
        {
            "blog/__init__.py": "",
            "blog/wsgi.py": APP + "\nfrom . import views\n",
            "blog/views.py": """\
                from .wsgi import app

                @app.route("/")
                def index():
                    return "index"
                """,
        }
    )
    generation = owned("blog.wsgi")
    assert generation["blog.wsgi"].app.routes["/"] is generation["blog.views"].index
    changed = [str(root / "blog/views.py")]
    assert graph.to_forget(generation, changed, "blog.wsgi") == {"blog.views", "blog.wsgi"}


@pytest.mark.parametrize(
    ("base", "sure"),
    [
        ("class Base:\n    pass\n", True),
        ("import abc\nclass Base(abc.ABC):\n    pass\n", True),
        (
            "class Base:\n    SUBCLASSES = []\n"
            "    def __init_subclass__(cls):\n        Base.SUBCLASSES.append(cls)\n",
            False,
        ),
        (
            "class Meta(type):\n    pass\nclass Base(metaclass=Meta):\n    pass\n",
            False,
        ),
    ],
)
def test_deriving_from_a_class_that_runs_code(write: Write, base: str, sure: bool) -> None:
    root = write(
        {
            "orm/__init__.py": "",
            "orm/db.py": base,
            "orm/models.py": "from .db import Base\n\nclass User(Base):\n    pass\n",
            "orm/wsgi.py": "from . import models\n",
        }
    )
    generation = owned("orm.wsgi")
    found = graph.to_forget(generation, [str(root / "orm/models.py")], "orm.wsgi")
    assert found == ({"orm.models", "orm.wsgi"} if sure else None)


def test_unparsable_source_cannot_tell(write: Write) -> None:
    root = write(SHOP)
    generation = owned("shop.wsgi")
    edit(root / "shop/db.py", "def connect(:\n")
    assert graph.to_forget(generation, [str(root / "shop/db.py")], "shop.wsgi") is None


def test_unparsable_source_elsewhere_cannot_tell(write: Write) -> None:
    root = write(SHOP)
    generation = owned("shop.wsgi")
    edit(root / "shop/util.py", "X = (\n")
    assert graph.to_forget(generation, [str(root / "shop/db.py")], "shop.wsgi") is None


def test_parsing_warnings_stay_quiet(write: Write) -> None:
    root = write({**SHOP, "shop/util.py": "PATTERN = '\\d+'\n"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generation = owned("shop.wsgi")
    changed = [str(root / "shop/util.py")]
    assert graph.to_forget(generation, changed, "shop.wsgi") == {
        "shop.util",
        "shop.admin",
        "shop.wsgi",
    }


def test_parsed_sources_are_cached_by_file_version(write: Write) -> None:
    root = write(SHOP)
    generation = owned("shop.wsgi")
    changed = [str(root / "shop/db.py")]
    first = graph.to_forget(generation, changed, "shop.wsgi")
    before = graph.cache_info()
    assert graph.to_forget(generation, changed, "shop.wsgi") == first
    after = graph.cache_info()
    assert after.hits - before.hits == len(generation)
    assert after.misses == before.misses
    edit(root / "shop/db.py", "import shop.util\n")
    assert graph.to_forget(generation, changed, "shop.wsgi") == first
    assert graph.cache_info().misses == after.misses + 1


def test_proxies_in_globals_are_not_touched(write: Write) -> None:
    proxy = """\
        class Unbound:
            def __getattribute__(self, name):
                raise RuntimeError("working outside of a context")

        current = Unbound()
        """
    root = write({**SHOP, "shop/util.py": proxy})
    generation = owned("shop.wsgi")
    changed = [str(root / "shop/util.py")]
    assert graph.to_forget(generation, changed, "shop.wsgi") == {
        "shop.util",
        "shop.admin",
        "shop.wsgi",
    }


def test_django_include_strings_and_the_root_urlconf(write: Write) -> None:
    # mysite.urls names polls.urls only in a string; nothing imports mysite.urls:
    # Django imports the ROOT_URLCONF by name, a root forgotten with the app.
    root = write(
        {
            "mysite/__init__.py": "",
            "mysite/wsgi.py": "application = object()\n",
            "mysite/urls.py": """\
                from django.urls import include, path

                urlpatterns = [
                    path("polls/", include("polls.urls")),
                    path("shop/", include(("shop.urls", "shop"))),
                ]
                """,
            "polls/__init__.py": "",
            "polls/urls.py": "from . import views\nurlpatterns = []\n",
            "polls/views.py": "def index(request):\n    return None\n",
            "polls/forms.py": "",
            "shop/__init__.py": "",
            "shop/urls.py": "urlpatterns = []\n",
        }
    )
    pytest.importorskip("django")
    generation = owned("mysite.wsgi", "mysite.urls", "polls.forms", "shop.urls")
    edit(root / "polls/views.py", "def index(request):\n    return 1\n")
    changed = [str(root / "polls/views.py")]
    assert graph.to_forget(generation, changed, "mysite.wsgi", roots=["mysite.urls"]) == {
        "polls.views",
        "polls.urls",
        "mysite.urls",
        "mysite.wsgi",
    }
    edit(root / "shop/urls.py", "urlpatterns = [1]\n")
    changed = [str(root / "shop/urls.py")]
    assert graph.to_forget(generation, changed, "mysite.wsgi") == {
        "shop.urls",
        "mysite.urls",
        "mysite.wsgi",
    }
