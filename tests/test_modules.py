from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import pytest
import webtest

import memento
from memento import modules


def test_protected_modules():
    assert modules.is_protected("sys", sys)
    assert modules.is_protected("json", json)
    assert modules.is_protected("webtest", webtest)  # installed distribution
    assert modules.is_protected("memento", memento)
    assert modules.is_protected("__main__", sys.modules["__main__"])
    assert modules.is_protected("_json", sys.modules.get("_json") or json)
    assert modules.is_protected("dynamic", types.ModuleType("dynamic"))  # no file
    assert modules.is_protected("notamodule", object())


def test_user_module_is_not_protected(make_package):
    make_package("shop", {"__init__.py": "", "views.py": "X = 1\n"})
    import shop.views

    assert not modules.is_protected("shop.views", shop.views)
    assert not modules.is_protected("shop", sys.modules["shop"])


def test_c_extension_outside_site_packages_is_protected(tmp_path):
    import _json

    if not getattr(_json, "__file__", None):
        pytest.skip("_json is built in here")
    fake = types.ModuleType("speedups")
    fake.__file__ = str(tmp_path / ("speedups" + Path(_json.__file__).suffix))
    assert modules.is_protected("speedups", fake)


def test_forget_calls_unload_hooks_children_first(make_package):
    make_package(
        "shop",
        {"__init__.py": "ORDER = []\ndef __memento_unload__():\n    ORDER.append('shop')\n",
         "views.py": "import shop\ndef __memento_unload__():\n    shop.ORDER.append('views')\n"},
    )
    importlib.import_module("shop.views")
    order = sys.modules["shop"].ORDER
    modules.forget(modules.snapshot(["shop", "shop.views"]))
    assert order == ["views", "shop"]
    assert "shop" not in sys.modules and "shop.views" not in sys.modules


def test_restore_puts_a_generation_back(make_package):
    make_package("shop", {"__init__.py": "", "views.py": "X = 1\n"})
    importlib.import_module("shop.views")
    generation = modules.snapshot(["shop", "shop.views"])
    modules.forget(generation)
    modules.restore(generation)
    assert sys.modules["shop.views"] is generation["shop.views"]


def test_discard_bytecode_removes_the_pyc(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("X = 1\n")
    import importlib.util
    import py_compile

    py_compile.compile(str(source))
    cached = Path(importlib.util.cache_from_source(str(source)))
    assert cached.exists()
    modules.discard_bytecode([str(source), str(tmp_path / "other.html")])
    assert not cached.exists()


def test_recording_handlers_names_the_module_that_attached_them():
    import logging

    handler = logging.NullHandler()
    code = "import logging\nlogging.getLogger('recorded').addHandler(HANDLER)\n"
    with modules.recording_handlers() as records:
        exec(code, {"__name__": "shop.logconf", "HANDLER": handler})
    logger = logging.getLogger("recorded")
    assert records == [(logger, handler, "shop.logconf")]
    modules.detach_handlers(records)
    assert handler not in logger.handlers
    assert logging.Logger.addHandler.__module__ == "logging"
