"""modules.compiled_as_is: whether an import compiled a source file as it is now."""

from __future__ import annotations

import importlib
import sys

from helpers import edit

from memento.modules import compiled_as_is


def test_imported_file_is_compiled_as_is_until_edited(make_package, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    pkg = make_package("shop", {"__init__.py": "", "colour.py": "COLOUR = 'red'\n"})
    path = str(pkg / "colour.py")
    assert not compiled_as_is(path)  # never imported: no bytecode
    importlib.import_module("shop.colour")
    assert compiled_as_is(path)
    edit(pkg / "colour.py", "COLOUR = 'blue, much longer'\n")
    assert not compiled_as_is(path)


def test_missing_source_is_not_compiled_as_is(tmp_path):
    assert not compiled_as_is(str(tmp_path / "gone.py"))
