"""The snapshot-and-rollback policy."""

from __future__ import annotations

import sys
import weakref
from typing import Any, Callable

from .base import ReloadingMiddleware
from .modules import Generation, covers, is_protected


class Mori(ReloadingMiddleware):
    """Reload by forgetting every module first imported after a snapshot.

    :meth:`turn_on` snapshots the names in ``sys.modules``; a reload forgets
    the modules imported since, except what cannot be imported twice safely
    (built-in, frozen and C extension modules, the standard library,
    installed distributions, ``__main__``, memento) and the ``keep`` names
    with their submodules.
    """

    def __init__(self, app: str, *, turn_on: bool = True, **options: Any) -> None:
        self.previous_modules = frozenset(sys.modules)
        self._protected: dict[str, tuple[Callable[[], object], bool]] = {}
        super().__init__(app, turn_on=turn_on, **options)

    @property
    def new_modules(self) -> set[str]:
        """The names a reload would forget now."""
        return set(self._forgettable())

    def turn_on(self) -> None:
        """Take a fresh snapshot of ``sys.modules`` and turn reloading on.

        Whatever a reload would forget now stays forgettable: the
        application's modules and those imported since the last snapshot.
        """
        self.previous_modules = frozenset(sys.modules) - set(self._forgettable())
        super().turn_on()

    def _forgettable(self) -> Generation:
        keep = self.options.keep
        return {
            name: module  # type: ignore[misc]
            for name, module in list(sys.modules.items())
            if name not in self.previous_modules
            and not covers(keep, name)
            and not self._is_protected(name, module)
        }

    def _is_protected(self, name: str, module: object) -> bool:
        # Installed packages stay the same objects across reloads: remember them.
        cached = self._protected.get(name)
        if cached is not None and cached[0]() is module:
            return cached[1]
        protected = is_protected(name, module)
        try:
            self._protected[name] = (weakref.ref(module), protected)
        except TypeError:  # not a module: cannot be referenced weakly
            pass
        return protected
