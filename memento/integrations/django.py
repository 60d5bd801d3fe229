"""Django: the app registry holds for good, URLs and templates are cached.

``django.setup()`` runs once per process: it imports the settings, every
installed application's package, ``apps.py``, models and (through
``AppConfig.ready()``) admin modules and signal receivers, and the app
registry keeps what they defined. Importing those modules again would
register models twice and leave the admin and the signals on the old
classes, so they are *held*: never forgotten, their edits need a restart.

Everything Django imports later and lazily (the URLconf and the views it
names, forms, template tag libraries, utilities) reloads in process: before
the import the URL resolver caches and the template engines are reset,
after it ``ROOT_URLCONF`` and the template engines are loaded inside the
reload, so their errors reach the error page and their modules are tracked.
An edit of a template only resets the template loaders.
"""

from __future__ import annotations

import sys
from collections.abc import Collection

from ..modules import user_modules
from . import Integration, under, user_folders

__all__ = ["DjangoIntegration", "serves"]

#: How many middlewares around Django's handler are looked through.
WRAPPERS = 4


def serves(app: object) -> bool:
    """Whether the application is Django's handler, or a middleware around it
    (WhiteNoise, the static files handler: ``.application``, ``.app``)."""
    handlers = sys.modules.get("django.core.handlers.wsgi")
    if handlers is None:
        return False
    for _ in range(WRAPPERS):
        if isinstance(app, handlers.WSGIHandler):
            return True
        app = getattr(app, "application", None) or getattr(app, "app", None)
    return False


def is_half_set_up() -> bool:
    """Whether ``django.setup()`` failed half-way: the app registry cannot be filled again."""
    registry = sys.modules.get("django.apps.registry")
    return registry is not None and registry.apps.loading and not registry.apps.ready


class DjangoIntegration(Integration):
    """Hold what ``django.setup()`` imported; reset URL and template caches around reloads."""

    name = "Django"

    def __init__(self, held: frozenset[str], template_dirs: tuple[str, ...] = ()) -> None:
        self._held = held
        self._template_dirs = template_dirs

    @classmethod
    def make(cls, previous: Integration | None, app_module: str) -> DjangoIntegration:
        """The integration for a new generation; the first decides what is held.

        The template folders stay those of the generation before until the
        new one has loaded its template engines.
        """
        if isinstance(previous, DjangoIntegration):
            return cls(previous.held(), previous.watch())
        return cls(setup_modules(app_module))

    def held(self) -> frozenset[str]:
        return self._held

    def watch(self) -> tuple[str, ...]:
        return self._template_dirs

    def roots(self) -> tuple[str, ...]:
        from django.conf import settings

        return (settings.ROOT_URLCONF,)

    def refreshes(self, paths: Collection[str]) -> bool:
        return under(paths, self._template_dirs)

    def refresh(self, paths: Collection[str]) -> None:
        from django.template import engines

        for backend in engines.all():
            _reset_backend(backend)
        renderer = _default_renderer()
        if renderer is not None:
            _reset_backend(getattr(renderer, "engine", None))

    def before_import(self) -> None:
        from django.template import engines
        from django.template.engine import Engine
        from django.urls import clear_url_caches

        clear_url_caches()
        # Template engines hold the tag libraries of the old generation.
        engines._engines = {}
        engines.__dict__.pop("templates", None)
        Engine.get_default.cache_clear()
        if "django.forms.renderers" in sys.modules:
            sys.modules["django.forms.renderers"].get_default_renderer.cache_clear()

    def after_import(self) -> None:
        from django.template import engines
        from django.urls import get_resolver

        # The URLconf and everything it includes, as the first request would.
        get_resolver().reverse_dict  # noqa: B018
        backends = engines.all()  # imports the template tag libraries
        self._template_dirs = user_folders(
            folder for backend in backends for folder in backend.template_dirs
        )


def setup_modules(app_module: str) -> frozenset[str]:
    """The user's modules loaded now, but the WSGI module and the middleware's:
    what ``django.setup()`` imported and the app registry holds."""
    from django.conf import settings

    lazy = {app_module, *(path.rpartition(".")[0] for path in settings.MIDDLEWARE)}
    return frozenset(user_modules().keys() - lazy)


def _reset_backend(backend: object) -> None:
    engine = getattr(backend, "engine", None)  # DjangoTemplates
    for loader in getattr(engine, "template_loaders", ()):
        reset = getattr(loader, "reset", None)
        if reset is not None:
            reset()
    cache = getattr(getattr(backend, "env", None), "cache", None)  # Jinja2
    if cache is not None:
        cache.clear()


def _default_renderer() -> object | None:
    renderers = sys.modules.get("django.forms.renderers")
    return renderers.get_default_renderer() if renderers is not None else None
