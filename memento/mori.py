"""The snapshot-and-rollback policy."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from .base import ReloadingMiddleware
from .modules import Generation, covers, is_protected, module_file


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
        self._protected: dict[tuple[str, str | None], bool] = {}
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

    def _candidates(self) -> Generation:
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
        # Keyed by name and file: a module imported again from the same file
        # is judged the same, without resolving its path again.
        if not isinstance(module, ModuleType):
            return True
        key = (name, module_file(module))
        protected = self._protected.get(key)
        if protected is None:
            protected = self._protected[key] = is_protected(name, module)
        return protected
