"""Flask: watch the template folders, and reset Jinja's cache when they change.

The template folders of the application and of each blueprint are watched
without ``watch=``. An edit there (not of a module) empties the Jinja
environment's template cache: the application, its state and the
environment stay, nothing is forgotten.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection

from . import Integration, under, user_folders

__all__ = ["FlaskIntegration", "serves"]


def serves(app: object) -> bool:
    """Whether the application is a Flask application."""
    flask = sys.modules["flask"]
    return isinstance(app, getattr(flask, "Flask", ()))


class FlaskIntegration(Integration):
    """Watch the template folders of the application and its blueprints."""

    name = "Flask"

    def __init__(self, app: object) -> None:
        self._app = app
        scaffolds = [app, *getattr(app, "blueprints", {}).values()]
        self._folders = user_folders(
            os.path.join(scaffold.root_path, scaffold.template_folder)  # type: ignore[attr-defined]
            for scaffold in scaffolds
            if getattr(scaffold, "template_folder", None)
        )

    def watch(self) -> tuple[str, ...]:
        return self._folders

    def refreshes(self, paths: Collection[str]) -> bool:
        return under(paths, self._folders)

    def refresh(self, paths: Collection[str]) -> None:
        # jinja_env is a cached property: only an environment already made has a cache.
        env = vars(self._app).get("jinja_env")
        cache = getattr(env, "cache", None)
        if cache is not None:
            cache.clear()
