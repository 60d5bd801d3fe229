"""A Pyramid application: routes added by the Configurator, views found by ``config.scan()``.

Serve it with reloading::

    memento --app-dir examples pyramid_app.wsgi:app

or from a paste.deploy file, see ``development.ini``.
"""

from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.router import Router


def main(global_config: dict[str, Any] | None = None, **settings: Any) -> Router:
    """The paste.deploy application factory; memento calls it again after each reload."""
    with Configurator(settings=settings) as config:
        config.add_route("home", "/")
        config.add_route("hello", "/hello/{name}")
        # venusian imports the views module and registers what is decorated
        # in it: each generation of the code scans its own new functions.
        config.scan(".views")
    return config.make_wsgi_app()
