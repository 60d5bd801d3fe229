"""What ``sys.modules`` holds, what may be forgotten, and forgetting it."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import site
import sys
import sysconfig
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from types import ModuleType

from ._compat import stdlib_module_names

log = logging.getLogger("memento")

Generation = dict[str, ModuleType]

_OWN_NAME = __name__.split(".")[0]
_NO_SOURCE_ORIGINS = frozenset({"built-in", "frozen"})


def covers(names: Iterable[str], modname: str) -> bool:
    """Whether ``modname`` is one of ``names`` or a submodule of one."""
    return any(modname == name or modname.startswith(name + ".") for name in names)


@cache
def installed_prefixes() -> tuple[str, ...]:
    """Folders of the standard library and installed distributions, each ending in a separator."""
    paths = set(site.getsitepackages()) if hasattr(site, "getsitepackages") else set()
    if site.ENABLE_USER_SITE:
        paths.add(site.getusersitepackages())
    scheme = sysconfig.get_paths()
    paths.update(scheme[key] for key in ("purelib", "platlib"))
    stdlib = {scheme["stdlib"], scheme["platstdlib"]}
    # Inside a virtualenv the standard library lives under the base prefix.
    for prefix in {sys.base_prefix, sys.base_exec_prefix}:
        prefixes = {"base": prefix, "platbase": prefix, "installed_base": prefix}
        base = sysconfig.get_paths(vars=prefixes)
        stdlib.update((base["stdlib"], base["platstdlib"]))
    return tuple(os.path.join(os.path.realpath(path), "") for path in paths | stdlib)


_OWN_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "")


@cache
def is_library_file(path: str) -> bool:
    """Whether a path lies in the standard library, an installed distribution
    or memento itself: code that is never the user's to reload."""
    real = os.path.realpath(path)
    return real.startswith(installed_prefixes()) or real.startswith(_OWN_DIR)


def module_file(module: object) -> str | None:
    """The source (or extension) file a module was loaded from, if any."""
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) if spec is not None else None
    if isinstance(origin, str) and origin not in _NO_SOURCE_ORIGINS and spec.has_location:
        return origin
    filename = getattr(module, "__file__", None)
    return filename if isinstance(filename, str) else None


def is_protected(modname: str, module: object) -> bool:
    """Whether a module must never be forgotten: it cannot be imported twice safely.

    That is built-in, frozen and C extension modules, the standard library,
    installed distributions, ``__main__``, memento itself and anything that
    is not a plain module loaded from a file or a namespace package.
    """
    top = modname.partition(".")[0]
    # Dunder names are the interpreter's aliases (__main__, __mp_main__) or
    # installers' import hooks.
    if top.startswith("__") or top == _OWN_NAME or top in stdlib_module_names():
        return True
    if not isinstance(module, ModuleType):
        return True
    filename = module_file(module)
    if filename is None:
        return not _is_namespace(module)
    if filename.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return True
    return is_library_file(filename)


def _is_namespace(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    locations = getattr(spec, "submodule_search_locations", None)
    if spec is None or locations is None or spec.origin not in (None, "namespace"):
        return False
    return bool(locations) and not any(is_library_file(path) for path in locations)


def user_modules(loaded: Mapping[str, object] | None = None) -> Generation:
    """The user's modules among ``loaded`` (default :data:`sys.modules`):
    everything :func:`is_protected` leaves out."""
    items = list((sys.modules if loaded is None else loaded).items())
    return {name: module for name, module in items if not is_protected(name, module)}  # type: ignore[misc]


def source_files(modules: Mapping[str, object]) -> set[str]:
    """The files that hold the code of ``modules`` (packages: their ``__init__``)."""
    files = set()
    for module in modules.values():
        filename = module_file(module)
        if filename:
            files.add(filename)
    return files


def snapshot(names: Iterable[str]) -> Generation:
    """The module objects now in ``sys.modules`` under ``names``."""
    return {
        name: module
        for name in names
        if isinstance(module := sys.modules.get(name), ModuleType)
    }


def forget(generation: Mapping[str, ModuleType]) -> None:
    """Remove a generation from ``sys.modules``, calling each ``__memento_unload__``.

    Submodules are unloaded before their packages; a failing hook is logged.
    """
    for name in sorted(generation, key=lambda name: name.count("."), reverse=True):
        module = generation[name]
        unload = getattr(module, "__memento_unload__", None)
        if callable(unload):
            try:
                unload()
            except Exception:
                log.exception("__memento_unload__ of %s failed", name)
        if sys.modules.get(name) is module:
            del sys.modules[name]
        _unbind(name, module)


def _unbind(name: str, module: ModuleType) -> None:
    """Remove a forgotten module from a parent package that stays, so that
    ``from package import module`` imports it again."""
    parent_name, _, child = name.rpartition(".")
    parent = sys.modules.get(parent_name) if parent_name else None
    if parent is not None and getattr(parent, child, None) is module:
        try:
            delattr(parent, child)
        except AttributeError:
            pass


def discard(names: Iterable[str]) -> None:
    """Remove modules from ``sys.modules`` without calling their hooks."""
    for name in names:
        module = sys.modules.pop(name, None)
        if isinstance(module, ModuleType):
            _unbind(name, module)


def restore(generation: Mapping[str, ModuleType]) -> None:
    """Put a forgotten generation back into ``sys.modules``."""
    sys.modules.update(generation)
    attach(generation)


def attach(kept: Mapping[str, ModuleType]) -> None:
    """Set modules as attributes of their parent packages where those lack them.

    A module kept across a reload stays in ``sys.modules``, so the import
    system does not bind it again on its freshly imported parent package.
    """
    for name, module in kept.items():
        parent_name, _, child = name.rpartition(".")
        parent = sys.modules.get(parent_name) if parent_name else None
        if parent is not None and getattr(parent, child, None) is not module:
            setattr(parent, child, module)


@contextmanager
def binding(kept: Mapping[str, ModuleType]) -> Iterator[None]:
    """While the body runs, a package imported again finds its ``kept``
    submodules bound on it before its ``__init__`` runs.

    The import system binds a submodule on its package when it imports it;
    a module kept in ``sys.modules`` across a reload is not imported again,
    so ``import pkg.sub; pkg.sub.x`` in the new package's code would fail.
    """
    children: dict[str, dict[str, ModuleType]] = {}
    for name, module in kept.items():
        parent, _, child = name.rpartition(".")
        if parent:
            children.setdefault(parent, {})[child] = module
    if not children:
        yield
        return
    finder = _BindingFinder(children)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


class _BindingFinder:
    """Finds packages as the other finders do, then binds their kept submodules
    on the new module object before it executes."""

    def __init__(self, children: Mapping[str, Mapping[str, ModuleType]]) -> None:
        self.children = children

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.children:
            return None
        for finder in [f for f in sys.meta_path if f is not self]:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _BindingLoader(spec.loader, self.children[fullname])
        return spec


class _BindingLoader:
    """Puts the real loader back on the module, binds the submodules, executes it."""

    def __init__(self, loader: importlib.abc.Loader, children: Mapping[str, ModuleType]) -> None:
        self.loader = loader
        self.children = children

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        if spec is not None and spec.loader is self:
            spec.loader = self.loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self.loader
        for child, submodule in self.children.items():
            if sys.modules.get(f"{module.__name__}.{child}") is submodule:
                setattr(module, child, submodule)
        self.loader.exec_module(module)


def discard_bytecode(paths: Iterable[str], *, only_stale: bool = False) -> None:
    """Delete the cached bytecode of source files.

    CPython validates a ``.pyc`` by the source's whole-second mtime and its
    size: two edits of equal size within one second would otherwise load
    the first edit's bytecode for the second. ``only_stale``: keep a
    ``.pyc`` written after its source was last modified.
    """
    for path in paths:
        if not path.endswith(".py"):
            continue
        try:
            cached = importlib.util.cache_from_source(path)
            if only_stale and os.stat(cached).st_mtime_ns > os.stat(path).st_mtime_ns:
                continue
            os.remove(cached)
        except (OSError, NotImplementedError, ValueError):
            pass


def compiled_as_is(path: str) -> bool:
    """Whether the cached bytecode of the source file ``path`` was compiled
    from the file as it is now (the modification time and size its header
    records); ``False`` when there is none or it cannot be read.

    An import reads the source only when that bytecode is stale, and then
    writes it anew: a module imported since the file was last modified has it.
    """
    found = read_bytecode(path)
    try:
        st = os.stat(path)
    except OSError:
        return False
    if found is None:
        return False
    flags, mtime, size, _ = found
    return flags == 0 and mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size & 0xFFFFFFFF


def read_bytecode(path: str) -> tuple[int, int, int, bytes] | None:
    """The cached bytecode of the source file ``path``: its header's flags,
    the source's modification time (whole seconds) and size it records, and
    the marshalled code; ``None`` when it is missing, unreadable or not this
    Python's."""
    try:
        cached = importlib.util.cache_from_source(path)
        with open(cached, "rb") as file:
            data = file.read()
    except (OSError, NotImplementedError, ValueError):
        return None
    if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
        return None
    flags, mtime, size = (int.from_bytes(data[i : i + 4], "little") for i in (4, 8, 12))
    return flags, mtime, size, data[16:]


HandlerRecord = tuple[logging.Logger, logging.Handler, str]


@contextmanager
def recording_handlers() -> Iterator[list[HandlerRecord]]:
    """Record the logging handlers attached while the body runs, with the
    module whose code attached them (``logging.basicConfig`` and
    ``logging.config`` are seen through to their caller)."""
    added: list[HandlerRecord] = []
    original = logging.Logger.addHandler

    def add_handler(logger: logging.Logger, handler: logging.Handler) -> None:
        original(logger, handler)
        added.append((logger, handler, _calling_module()))

    logging.Logger.addHandler = add_handler  # type: ignore[method-assign]
    try:
        yield added
    finally:
        logging.Logger.addHandler = original  # type: ignore[method-assign]


def _calling_module() -> str:
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name != "logging" and not name.startswith("logging."):
            return str(name)
        frame = frame.f_back  # type: ignore[assignment]
    return ""


def detach_handlers(records: Iterable[HandlerRecord]) -> None:
    """Remove recorded handlers from their loggers (without closing them)."""
    for logger, handler, _ in records:
        logger.removeHandler(handler)


def reattach_handlers(records: Iterable[HandlerRecord]) -> None:
    for logger, handler, _ in records:
        logger.addHandler(handler)


def close_handlers(records: Iterable[HandlerRecord]) -> None:
    for _, handler, _ in records:
        try:
            handler.close()
        except Exception:
            log.exception("closing logging handler %r failed", handler)


def threads_of(names: Collection[str]) -> list[threading.Thread]:
    """Live threads running code of the named modules."""
    return [thread for thread in threading.enumerate() if _thread_module(thread) in names]


def warn_leftover_threads(names: Collection[str], grace: float = 0.2) -> None:
    """Log each thread of a forgotten generation still running after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    for thread in threads_of(names):
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning(
                "thread %r of the forgotten module %s is still running; "
                "stop it in that module's __memento_unload__()",
                thread.name,
                _thread_module(thread),
            )


def _thread_module(thread: threading.Thread) -> str:
    target = getattr(thread, "_target", None)
    return str(getattr(target, "__module__", None) if target else type(thread).__module__)


def describe(paths: Iterable[str]) -> str:
    """Paths as the logs show them: relative to the current directory when
    below it, else as given; ``"none"`` for no path."""
    shown = []
    for path in paths:
        relative = os.path.relpath(path) if os.path.isabs(path) else path
        shown.append(path if relative.startswith("..") else relative)
    return ", ".join(shown) or "none"
