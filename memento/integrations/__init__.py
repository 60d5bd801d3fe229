"""What each framework needs around a reload.

An :class:`Integration` answers the middleware's questions about the
framework of the application it serves: which modules the framework holds
for the life of the process (their edits need a restart), what to watch
beyond module files, what a change of those files needs (a cache reset
rather than a reload), what to reset before the application is imported
again, and what to import inside the reload that the framework would
otherwise import lazily, during a request.

:func:`detect` picks the integration from the resolved application. A
framework module is imported only when the application already imported it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Iterable

from ..modules import describe, is_library_file, snapshot, source_files

__all__ = ["Integration", "RestartNeeded", "blocked", "detect", "under", "user_folders"]


class RestartNeeded(Exception):
    """An edit that cannot be served without restarting the process.

    ``paths`` are the changed files; ``framework`` names what holds them.
    """

    def __init__(self, paths: Iterable[str], framework: str) -> None:
        self.paths = tuple(sorted(paths))
        self.framework = framework
        shown = describe(self.paths)
        super().__init__(
            f"{shown}: {framework} keeps this code for the life of the process;"
            " restart the process to serve the edit"
        )


class Integration:
    """A plain WSGI application: nothing beyond forgetting and importing again."""

    name = "WSGI"

    def held(self) -> frozenset[str]:
        """Module names the framework holds for good: never forgotten; an edit needs a restart."""
        return frozenset()

    def watch(self) -> tuple[str, ...]:
        """Files and directories to watch beyond the modules' source files."""
        return ()

    def roots(self) -> tuple[str, ...]:
        """Modules the framework imports by name (``scope="dependents"`` forgets them too)."""
        return ()

    def refreshes(self, paths: Collection[str]) -> bool:
        """Whether :meth:`refresh` alone serves these edits, nothing forgotten."""
        return False

    def refresh(self, paths: Collection[str]) -> None:
        """Make the edits of :meth:`refreshes` paths visible (reset caches)."""

    def before_import(self) -> None:
        """Reset what the framework cached from the generation about to be forgotten."""

    def after_import(self) -> None:
        """Import what the framework imports lazily; errors fail the reload."""


def detect(app: object, previous: Integration | None, app_module: str) -> Integration:
    """The integration for the application ``app`` resolved from ``app_module``.

    ``previous``: the integration of the generation before, if any (what a
    framework holds for good was decided at the first load).
    """
    if "django" in sys.modules:
        from . import django

        if django.serves(app):
            return django.DjangoIntegration.make(previous, app_module)
    if "flask" in sys.modules:
        from . import flask

        if flask.serves(app):
            return flask.FlaskIntegration(app)
    if "bottle" in sys.modules:
        from . import bottle

        if bottle.serves(app):
            return bottle.BottleIntegration()
    return Integration()


def blocked(
    integration: Integration, changed: Collection[str], before: Collection[str] = ()
) -> RestartNeeded | None:
    """The restart that ``changed`` calls for, or ``None`` when a reload serves it.

    ``before``: held paths already changed (a restart, once needed, stays needed).
    """
    held = source_files(snapshot(integration.held()))
    paths = {path for path in changed if path in held} | set(before)
    if paths:
        return RestartNeeded(paths, integration.name)
    if "django" in sys.modules and changed:
        from . import django

        if django.is_half_set_up():
            return RestartNeeded(changed, "Django's app registry, left half set up,")
    return None


def under(paths: Collection[str], folders: Iterable[str]) -> bool:
    """Whether every path lies below one of ``folders`` and none is Python source."""
    prefixes = tuple(os.path.join(folder, "") for folder in folders)
    return bool(paths and prefixes) and all(
        path.startswith(prefixes) and not path.endswith(".py") for path in paths
    )


def user_folders(folders: Iterable[str]) -> tuple[str, ...]:
    """The existing folders that hold the user's files (not a library's), absolute."""
    found = {os.path.abspath(os.fspath(folder)) for folder in folders if folder}
    return tuple(
        sorted(folder for folder in found if os.path.isdir(folder) and not is_library_file(folder))
    )
