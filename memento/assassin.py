"""The targeted purge policy."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from ._compat import stdlib_module_names
from .base import ReloadingMiddleware
from .modules import Generation, covers
from .options import as_list


class Assassin(ReloadingMiddleware):
    """Reload by forgetting named packages and all their submodules.

    ``exceptions`` keep their state across reloads (a database, a cache).
    A target naming the standard library, a built-in module or memento
    itself raises ``ValueError``.
    """

    def __init__(
        self,
        app: str,
        targets: Iterable[str] | str,
        exceptions: Iterable[str] | str | None = None,
        *,
        turn_on: bool = True,
        **options: Any,
    ) -> None:
        self.targets = tuple(check_target(name) for name in as_list(targets, "targets"))
        if not self.targets:
            raise ValueError(f"targets: expected at least one package name, got {targets!r}")
        self.exceptions = tuple(as_list(exceptions, "exceptions"))
        super().__init__(app, turn_on=turn_on, **options)

    def _candidates(self) -> Generation:
        return {
            name: module
            for name, module in list(sys.modules.items())
            if isinstance(module, ModuleType)
            and covers(self.targets, name)
            and not covers(self.exceptions, name)
        }


def check_target(name: str) -> str:
    """Refuse a target that must never be forgotten; return it unchanged."""
    if not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"targets: {name!r} is not a module name")
    top = name.partition(".")[0]
    if top == __name__.partition(".")[0]:
        raise ValueError(f"targets: refusing to forget memento itself ({name!r})")
    if top in sys.builtin_module_names or top in stdlib_module_names():
        raise ValueError(f"targets: refusing to forget the standard library module {name!r}")
    return name
