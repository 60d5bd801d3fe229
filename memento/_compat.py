"""Everything that depends on the Python version."""

from __future__ import annotations

import functools
import os
import sys
import sysconfig

if sys.version_info >= (3, 10):
    from importlib.resources import files as _files
else:
    from importlib_resources import files as _files

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
elif sys.version_info >= (3, 10):
    from importlib.abc import Traversable
else:
    from importlib_resources.abc import Traversable


@functools.cache
def stdlib_module_names() -> frozenset[str]:
    """The top-level names of the standard library's modules."""
    if sys.version_info >= (3, 10):
        return frozenset(sys.stdlib_module_names)
    return frozenset(sys.builtin_module_names) | _listed_stdlib_names()


def _listed_stdlib_names() -> frozenset[str]:
    names = set()
    stdlib = sysconfig.get_paths()["stdlib"]
    for folder in (stdlib, os.path.join(stdlib, "lib-dynload")):
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            if entry == "site-packages":
                continue
            name = entry.split(".", 1)[0]
            if name.isidentifier():
                names.add(name)
    return frozenset(names)


def resources_files(package: str) -> Traversable:
    """The package data of ``package``, as ``importlib.resources.files`` sees it.

    Python 3.9 uses the ``importlib-resources`` backport.
    """
    return _files(package)
