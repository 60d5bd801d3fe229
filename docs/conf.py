"""Sphinx configuration of memento's documentation.

Build: ``python -m pip install -e '.[docs]'`` then
``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
The snippets are checked by ``tests/test_docs.py`` in the normal test run.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

import memento  # noqa: E402

project = "memento"
author = "memento's authors"
copyright = "memento's authors"
version = release = memento.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosectionlabel",  # :ref:`page:Section title`
    "sphinx.ext.doctest",  # the testcode directive: snippets tests/test_docs.py runs
]

autosectionlabel_prefix_document = True

exclude_patterns = ["_build"]
root_doc = "index"
highlight_language = "python3"
pygments_style = "sphinx"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}

html_theme = "alabaster"
html_title = f"memento {release}"
html_theme_options = {
    "description": "Reload a WSGI application's code inside the running process.",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
