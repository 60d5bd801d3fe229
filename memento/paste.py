"""The paste.deploy factories: ``egg:memento#mori`` and ``egg:memento#assassin``.

Each is both an application (``paste.app_factory``) and a filter
(``paste.filter_app_factory``). Parsing is delegated to :mod:`memento.options`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Callable

from .assassin import Assassin
from .modules import covers, is_protected
from .mori import Mori
from .options import as_bool, as_list

_OPTION_KEYS = frozenset(
    {
        "reload_on",
        "scope",
        "interval",
        "watch",
        "on_error",
        "show_tracebacks",
        "drain_timeout",
        "live",
    }
)
_MORI_KEYS = _OPTION_KEYS | {"app", "reload", "keep", "events"}
_ASSASSIN_KEYS = _OPTION_KEYS | {"app", "reload", "packages", "exceptions", "events"}


def mori_app(global_conf: Mapping[str, str], **settings: str) -> Mori:
    """``[app:main] use = egg:memento#mori``: the ``app`` key names the application."""
    return _make_mori(_required_app(settings), settings)


def mori_filter(
    wrapped: Callable[..., Any], global_conf: Mapping[str, str], **settings: str
) -> Mori:
    """``[filter:reload] use = egg:memento#mori`` around an application.

    The wrapped application was imported before the filter is built, so
    Mori's snapshot leaves out the application's top-level package: its
    modules are forgotten and re-imported like the ones imported later.
    """
    statement = settings.get("app") or name_application(wrapped)
    middleware = _make_mori(statement, settings)
    top = middleware.resolver.module.partition(".")[0]
    middleware.previous_modules = frozenset(
        name for name in middleware.previous_modules if not covers((top,), name)
    )
    return middleware


def assassin_app(global_conf: Mapping[str, str], **settings: str) -> Assassin:
    """``[app:main] use = egg:memento#assassin``; ``packages`` defaults to the
    application's top-level package."""
    return _make_assassin(_required_app(settings), settings)


def assassin_filter(
    wrapped: Callable[..., Any], global_conf: Mapping[str, str], **settings: str
) -> Assassin:
    """``[filter:reload] use = egg:memento#assassin`` around an application."""
    return _make_assassin(settings.get("app") or name_application(wrapped), settings)


def name_application(app: object) -> str:
    """A resolver statement for an application object held by a module.

    ``ValueError`` when no module of the user's code holds it under a name
    (an application made by a factory at load time): give ``app`` then.
    """
    for modname, module in list(sys.modules.items()):
        if not isinstance(module, ModuleType) or is_protected(modname, module):
            continue
        for attr, value in list(vars(module).items()):
            if value is app and not attr.startswith("_"):
                return f"{modname}:{attr}"
    raise ValueError(
        f"app: cannot name the wrapped application {app!r} from a module; "
        "give the key app = package.module:app"
    )


def _required_app(settings: Mapping[str, str]) -> str:
    statement = settings.get("app")
    if not statement:
        raise ValueError("app: this key is required, e.g. app = myapp.wsgi:app")
    return statement


def _make_mori(statement: str, settings: Mapping[str, str]) -> Mori:
    _check_keys(settings, _MORI_KEYS)
    options = _options(settings)
    return Mori(statement, keep=as_list(settings.get("keep"), "keep"), **options)


def _make_assassin(statement: str, settings: Mapping[str, str]) -> Assassin:
    _check_keys(settings, _ASSASSIN_KEYS)
    options = _options(settings)
    packages = as_list(settings.get("packages"), "packages")
    if not packages:
        packages = (statement.partition(":")[0].partition(".")[0].strip(),)
    exceptions = as_list(settings.get("exceptions"), "exceptions")
    return Assassin(statement, packages, exceptions, **options)


def _check_keys(settings: Mapping[str, str], known: frozenset[str]) -> None:
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key, expected one of {', '.join(sorted(known))}")


def _options(settings: Mapping[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {
        key: settings[key] for key in _OPTION_KEYS if settings.get(key, "").strip()
    }
    options["turn_on"] = _paste_bool(settings.get("reload", "true"), "reload")
    if "events" in settings:
        options["events"] = _paste_bool(settings["events"], "events")
    if "show_tracebacks" in options and options["show_tracebacks"].strip().lower() != "auto":
        options["show_tracebacks"] = _paste_bool(options["show_tracebacks"], "show_tracebacks")
    return options


def _paste_bool(value: str, key: str) -> bool:
    """Read a boolean with paste.deploy's own converter, naming the key when it fails."""
    try:
        from paste.deploy.converters import asbool
    except ImportError:
        return as_bool(value, key)
    try:
        return bool(asbool(value))
    except ValueError as exc:
        raise ValueError(f"{key}: expected a boolean, got {value!r}") from exc


__all__ = [
    "assassin_app",
    "assassin_filter",
    "mori_app",
    "mori_filter",
    "name_application",
]
