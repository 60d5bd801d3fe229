"""Each option's default and validation, shared by the constructors, paste.deploy and CLI."""

from __future__ import annotations

import glob
import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, Union

log = logging.getLogger("memento")

RELOAD_ON = ("change", "request", "manual")
SCOPES = ("all", "dependents", "functions")
ON_ERROR = ("page", "keep", "raise")

#: ``fn(info, environ, start_response)`` answering in place of the error page.
ErrorHandler = Callable[..., Iterable[bytes]]
OnError = Union[str, ErrorHandler]

_TRUE = frozenset({"true", "yes", "on", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "off", "n", "f", "0", ""})


def as_bool(value: object, name: str) -> bool:
    """Read a boolean the way paste.deploy does (``true``/``false``, ``yes``/``no``, ...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{name}: expected a boolean, got {value!r}")


def as_list(value: object, name: str) -> tuple[str, ...]:
    """Read a list: ``None``, a string split on whitespace or commas, or strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part for part in re.split(r"[\s,]+", value) if part)
    if isinstance(value, os.PathLike):
        value = [value]
    if isinstance(value, Iterable):
        items = tuple(os.fspath(item) if isinstance(item, os.PathLike) else item for item in value)
        if all(isinstance(item, str) and item for item in items):
            return items
    raise ValueError(f"{name}: expected a list of names, got {value!r}")


def as_seconds(value: object, name: str) -> float:
    """Read a duration in seconds, a finite number ``>= 0``."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name}: expected seconds >= 0, got {value!r}")
    return seconds


def as_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")


def as_on_error(value: object) -> OnError:
    """Read ``on_error``: one of :data:`ON_ERROR` or a callable."""
    if callable(value):
        return value
    return as_choice(value, "on_error", ON_ERROR)


def as_show_tracebacks(value: object) -> bool | None:
    """Read ``show_tracebacks``: ``None`` (loopback clients only) or a boolean."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto", "none")):
        return None
    return as_bool(value, "show_tracebacks")


def as_live(value: object) -> bool | str:
    """Read ``live``: a boolean (on for loopback clients) or ``"all"`` (every client)."""
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    try:
        return as_bool(value, "live")
    except ValueError:
        raise ValueError(f"live: expected a boolean or 'all', got {value!r}") from None


def as_watch(value: object) -> tuple[str, ...]:
    """Read ``watch`` entries as absolute paths; a path or glob base must exist."""
    return as_paths(value, "watch")


def as_paths(value: object, name: str) -> tuple[str, ...]:
    """Read files, directories and glob patterns as absolute paths.

    Relative entries are relative to the current directory. A file or a
    pattern's fixed base directory must exist (``ValueError`` naming it); a
    pattern that matches nothing yet is logged at WARNING.
    """
    entries = []
    for entry in as_list(value, name):
        path = os.path.abspath(os.path.expanduser(entry))
        base = glob_base(path) if glob.has_magic(path) else path
        if not os.path.exists(base):
            raise ValueError(f"{name}: no such file or directory {entry!r}")
        if base != path and not glob.glob(path, recursive=True):
            log.warning("%s: pattern %r matches no file yet", name, entry)
        entries.append(path)
    return tuple(entries)


def glob_base(pattern: str) -> str:
    """The fixed directory a glob pattern starts from."""
    parts = []
    for part in pattern.split(os.sep):
        if glob.has_magic(part):
            break
        parts.append(part)
    return os.sep.join(parts) or os.sep


@dataclass(frozen=True)
class Options:
    """The validated options of one middleware."""

    reload_on: str = "change"
    scope: str = "all"
    interval: float = 0.3
    watch: tuple[str, ...] = ()
    on_error: OnError = "page"
    show_tracebacks: bool | None = None
    keep: tuple[str, ...] = ()
    drain_timeout: float = 10.0
    events: bool | None = None
    live: bool | str = False

    @classmethod
    def read(cls, **values: Any) -> Options:
        """Validate keyword options; an unknown name is a ``TypeError``."""
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unexpected option {sorted(unknown)[0]!r}")
        readers: dict[str, Callable[[Any], Any]] = {
            "reload_on": lambda v: as_choice(v, "reload_on", RELOAD_ON),
            "scope": lambda v: as_choice(v, "scope", SCOPES),
            "interval": lambda v: as_seconds(v, "interval"),
            "watch": as_watch,
            "on_error": as_on_error,
            "show_tracebacks": as_show_tracebacks,
            "keep": lambda v: as_list(v, "keep"),
            "drain_timeout": lambda v: as_seconds(v, "drain_timeout"),
            "events": lambda v: None if v is None else as_bool(v, "events"),
            "live": as_live,
        }
        options = cls(**{name: readers[name](value) for name, value in values.items()})
        if options.live and options.reload_on == "request":
            # every request would make a new generation, and every page reload
            raise ValueError("live: needs reload_on 'change' or 'manual', got 'request'")
        return options
