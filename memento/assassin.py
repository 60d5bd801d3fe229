"""The targeted purge policy."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from ._compat import stdlib_module_names
from .base import ReloadingMiddleware
from .modules import Generation, covers, is_protected, module_file
from .options import as_list

log = logging.getLogger("memento")


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
        self._protected: dict[tuple[str, str | None], bool] = {}
        self._untracked: dict[str, str] = {}  # source file -> module name
        super().__init__(app, turn_on=turn_on, **options)

    def _candidates(self) -> Generation:
        return {
            name: module
            for name, module in list(sys.modules.items())
            if isinstance(module, ModuleType)
            and covers(self.targets, name)
            and not covers(self.exceptions, name)
        }

    def _track(self, since: int, extra: Iterable[str] = ()) -> None:
        # The user's modules outside the targets are watched too, only to say
        # that an edit of theirs is not served (they are never forgotten).
        self._untracked = self._outside_targets()
        super()._track(since, {*extra, *self._untracked})

    def _to_forget(self, changed: tuple[str, ...]) -> Generation:
        for path in changed:
            name = self._untracked.get(path)
            if name is not None:
                log.warning(
                    "%s changed, but the module %s is not among the targets %s: the edit "
                    "is not served until the process restarts; add it to the targets "
                    "(--assassin %s) or use Mori",
                    path,
                    name,
                    ", ".join(self.targets),
                    name.partition(".")[0],
                )
        return super()._to_forget(changed)

    def _outside_targets(self) -> dict[str, str]:
        """The source files of the user's imported modules (not libraries) that
        no target covers, exceptions aside."""
        found = {}
        for name, module in list(sys.modules.items()):
            if covers(self.targets, name) or not isinstance(module, ModuleType):
                continue
            filename = module_file(module)
            key = (name, filename)
            protected = self._protected.get(key)
            if protected is None:
                protected = self._protected[key] = is_protected(name, module)
            if not protected and filename:
                found[filename] = name
        return found


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
