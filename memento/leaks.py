"""Forgotten generations: unhooking them from libraries that stay, and
finding those that something still keeps alive.

What a forgotten module registered into a library that is never forgotten
(an SQLAlchemy event listener, a signal receiver, a ``weakref.finalize``
callback) keeps the whole generation alive: its modules, classes, engines
and pooled connections. :func:`unhook` removes those registrations after a
successful reload, one small function per library, each run only when its
library is already imported. :class:`Leaks` then checks, off the request
path, that the forgotten generations are really gone, and names who holds
those that are not.

What belongs to a forgotten generation is told by identity, never by name:
the new generation reuses the names of the old one.
"""

from __future__ import annotations

import functools
import gc
import logging
import sys
import threading
import time
import types
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, Callable

from .modules import is_library_file, module_file

log = logging.getLogger("memento")

Generation = Mapping[str, types.ModuleType]  # read-only here: modules.Generation is a dict


class Forgotten:
    """Tells whether an object belongs to a forgotten generation of modules.

    It holds the generation's modules while it is used: make one, use it,
    drop it.
    """

    def __init__(self, generation: Generation) -> None:
        self.modules = dict(generation)
        self._dicts = {id(vars(module)) for module in self.modules.values()}

    def __bool__(self) -> bool:
        return bool(self.modules)

    def owns(self, obj: object, depth: int = 3) -> bool:
        """Whether ``obj`` is code or data of the forgotten generation: a
        function defined there (or wrapping one: a closure, a partial, a bound
        method), a class defined there, an instance of one, one of its modules."""
        if _is(obj, types.FunctionType):
            return id(obj.__globals__) in self._dicts or (
                depth > 0 and any(self.owns(value, depth - 1) for value in _cells(obj))
            )
        if _is(obj, types.MethodType):
            return self.owns(obj.__func__, depth) or self.owns(obj.__self__, depth - 1)
        if _is(obj, functools.partial):
            parts = (obj.func, *obj.args, *obj.keywords.values())
            return depth > 0 and any(self.owns(part, depth - 1) for part in parts)
        if _is(obj, (classmethod, staticmethod)):
            return self.owns(obj.__func__, depth)
        if _is(obj, types.ModuleType):
            return id(vars(obj)) in self._dicts
        if _is(obj, type):
            return self.defines(obj)
        return self.defines(type(obj))

    def defines(self, cls: type) -> bool:
        """Whether a class was defined by a forgotten module."""
        module = self.modules.get(cls.__dict__.get("__module__"))  # type: ignore[arg-type]
        if module is None:
            return False
        found: Any = module
        for part in cls.__qualname__.split("."):
            found = vars(found).get(part) if hasattr(found, "__dict__") else None
        if found is cls:
            return True
        return any(
            _is(value, types.FunctionType) and id(value.__globals__) in self._dicts
            for value in _functions(vars(cls).values())
        )


def _is(obj: object, cls: type | tuple[type, ...]) -> bool:
    """``isinstance`` by the real type: never asks a proxy (Django's lazy
    settings, werkzeug's locals) for its ``__class__``."""
    return issubclass(type(obj), cls)


def _cells(function: types.FunctionType) -> Iterator[object]:
    for cell in function.__closure__ or ():
        try:
            yield cell.cell_contents
        except ValueError:  # an empty cell
            pass


def _functions(values: Any) -> Iterator[object]:
    for value in values:
        yield value.__func__ if _is(value, (classmethod, staticmethod)) else value


def user_globals(forgotten: Forgotten) -> Iterator[object]:
    """The global values of the user's modules that stay (not libraries)."""
    for name, module in list(sys.modules.items()):
        if forgotten.modules.get(name) is module or not _is(module, types.ModuleType):
            continue
        filename = module_file(module)
        if filename is None:
            continue
        if not is_library_file(filename):
            yield from list(vars(module).values())


def reachable_globals(forgotten: Forgotten) -> Iterator[object]:
    """The globals of the forgotten modules, of the modules they imported (two
    levels down) and of the user's modules that stay, with the values of the
    mappings among them (signal namespaces): where the objects a generation
    registered into live (signals, engines)."""
    seen = {id(module) for module in forgotten.modules.values()}
    # Each value once: the modules of an application import the same names
    # (hundreds of thousands of globals, a few thousand objects).
    values: dict[int, object] = {}
    layer = list(_old_globals(forgotten))
    for depth in range(3):
        imported = []
        for value in layer:
            if id(value) in values:
                continue
            values[id(value)] = value
            if depth < 2 and _is(value, types.ModuleType) and id(value) not in seen:
                seen.add(id(value))
                imported.append(value)
        layer = [value for module in imported for value in list(vars(module).values())]
    for value in user_globals(forgotten):
        values.setdefault(id(value), value)
    for value in list(values.values()):
        yield value
        if _is(value, dict) and type(value) is not dict:
            yield from list(value.values())


def _instances(values: Iterator[object], cls: type) -> list[Any]:
    seen: dict[int, object] = {}
    for value in values:
        if _is(value, cls):
            seen.setdefault(id(value), value)
    return list(seen.values())


# -- the unhookers: one per library, each given the forgotten generation --------


def unhook_sqlalchemy_listeners(forgotten: Forgotten) -> int:
    """Remove SQLAlchemy event listeners whose functions belong to the generation."""
    from sqlalchemy.event import registry

    removed = 0
    for key, owners in list(registry._key_to_collection.items()):
        for owner_ref, listener_ref in list(owners.items()):
            collection, listener = owner_ref(), listener_ref()
            if collection is None or listener is None or not forgotten.owns(listener):
                continue
            _remove_listener(collection, listener)
            owners.pop(owner_ref, None)
            registry._collection_to_key.get(owner_ref, {}).pop(listener_ref, None)
            removed += 1
        if not owners:
            registry._key_to_collection.pop(key, None)
    return removed


def _remove_listener(collection: Any, listener: object) -> None:
    """Take ``listener`` out of a class-level or an instance-level collection."""
    lists = list(collection._clslevel.values()) if hasattr(collection, "_clslevel") else []
    lists.append(getattr(collection, "listeners", ()))
    for listeners in lists:
        while listener in listeners:
            listeners.remove(listener)
    propagate = getattr(collection, "propagate", None)
    if propagate is not None:
        propagate.discard(listener)


def dispose_sqlalchemy_engines(forgotten: Forgotten) -> int:
    """Dispose the engines the generation's globals hold (Flask-SQLAlchemy's
    per application too), unless a module that stays holds them as well:
    their pooled connections close."""
    old = {id(engine): engine for engine in _engines(_old_globals(forgotten))}
    for engine in _engines(user_globals(forgotten)):
        old.pop(id(engine), None)
    for engine in old.values():
        engine.dispose()
    return len(old)


def _old_globals(forgotten: Forgotten) -> Iterator[object]:
    for module in forgotten.modules.values():
        yield from list(vars(module).values())


def _engines(values: Iterator[object]) -> Iterator[Any]:
    from sqlalchemy.engine import Engine

    orm = sys.modules.get("sqlalchemy.orm")  # never imported here for an application without it
    sessions = (orm.scoped_session, orm.sessionmaker) if orm is not None else ()
    extension = getattr(sys.modules.get("flask_sqlalchemy"), "SQLAlchemy", None)
    for value in values:
        if _is(value, Engine):
            yield value
        elif extension is not None and _is(value, extension):
            for engines in list(value._app_engines.values()):
                yield from engines.values()
        elif sessions and _is(value, sessions):
            factory = value.session_factory if _is(value, sessions[0]) else value
            bind = getattr(factory, "kw", {}).get("bind")
            if _is(bind, Engine):
                yield bind


def disconnect_blinker(forgotten: Forgotten) -> int:
    """Disconnect blinker receivers (Flask's and extensions' signals) of the generation."""
    import blinker

    named = list(blinker.default_namespace.values())  # blinker.signal("name")
    removed = 0
    for signal in _instances(iter([*reachable_globals(forgotten), *named]), blinker.Signal):
        for receiver in list(signal.receivers.values()):
            if _is(receiver, weakref.ref):
                receiver = receiver()
            if receiver is not None and forgotten.owns(receiver):
                signal.disconnect(receiver)
                removed += 1
    return removed


def disconnect_django(forgotten: Forgotten) -> int:
    """Disconnect ``django.dispatch`` receivers of the generation.

    A receiver connected with a ``dispatch_uid`` kept the new generation's
    same connection out (Django refuses a second one under that uid): it
    is replaced by the new generation's function of the same name.
    """
    from django.dispatch import Signal

    removed = 0
    for signal in _instances(reachable_globals(forgotten), Signal):
        with signal.lock:
            entries = []
            for entry in signal.receivers:
                receiver = _deref(entry[1])
                if receiver is None or not forgotten.owns(receiver):
                    entries.append(entry)
                    continue
                removed += 1
                successor = _successor(forgotten, receiver, entry[0])
                if successor is not None:
                    entries.append((entry[0], _like(entry[1], successor, signal), *entry[2:]))
            signal.receivers[:] = entries
            signal.sender_receivers_cache.clear()
    return removed


def _deref(receiver: Any) -> Any:
    return receiver() if _is(receiver, weakref.ref) else receiver


def _successor(forgotten: Forgotten, receiver: Any, key: tuple) -> Any:
    """The new generation's function of the same name, for a receiver
    connected under a ``dispatch_uid``; ``None`` otherwise."""
    from django.dispatch.dispatcher import _make_id

    if key[0] == _make_id(receiver) or not _is(receiver, types.FunctionType):
        return None
    module = sys.modules.get(receiver.__module__)
    found = getattr(module, receiver.__name__, None) if module is not None else None
    if not _is(found, types.FunctionType) or forgotten.owns(found):
        return None
    return found


def _like(old: Any, receiver: Any, signal: Any) -> Any:
    """``receiver`` held as ``old`` was: weakly (with Django's finalizer) or not."""
    if not _is(old, weakref.ref):
        return receiver
    remove = getattr(signal, "_remove_receiver", None)
    if remove is None:  # Django 6.1 and later flag dead receivers from the reference
        return weakref.ref(receiver, signal._flag_dead_receivers)
    weakref.finalize(receiver, remove)
    return weakref.ref(receiver)


def detach_finalizers(forgotten: Forgotten) -> int:
    """Detach ``weakref.finalize`` entries whose callbacks belong to the generation."""
    owned = [
        finalizer
        for finalizer, info in list(weakref.finalize._registry.items())  # type: ignore[attr-defined]
        if forgotten.owns(info.func)
    ]
    for finalizer in owned:
        finalizer.detach()
    return len(owned)


#: (module that must already be imported, unhooker)
UNHOOKERS: tuple[tuple[str, Callable[[Forgotten], int]], ...] = (
    ("sqlalchemy.event.registry", unhook_sqlalchemy_listeners),
    ("sqlalchemy.engine", dispose_sqlalchemy_engines),
    ("blinker", disconnect_blinker),
    ("django.dispatch", disconnect_django),
    ("weakref", detach_finalizers),
)


def unhook(generation: Generation) -> int:
    """Unhook a forgotten generation from the libraries that stay.

    Each unhooker runs only when its library is imported; one that fails is
    logged and the others still run. Returns how many things were unhooked.
    """
    forgotten = Forgotten(generation)
    if not forgotten:
        return 0
    done = 0
    for library, unhooker in UNHOOKERS:
        if library not in sys.modules:
            continue
        try:
            count = unhooker(forgotten)
        except Exception:  # a library's internals changed: serving goes on
            log.exception("unhooking the forgotten generation (%s) failed", unhooker.__name__)
            continue
        if count:
            log.debug("%s: %d from the forgotten generation", unhooker.__name__, count)
        done += count
    return done


# -- seeing it: old generations that something still keeps alive ---------------


class _Record:
    """Weak references to what a forgotten generation defined."""

    def __init__(self, number: int, generation: Generation) -> None:
        self.number = number
        self.at = time.monotonic()
        self.checked = self.reported = False
        self.refs = [weakref.ref(obj) for obj in _defined(Forgotten(generation))]

    def alive(self) -> list[object]:
        return [obj for obj in (ref() for ref in self.refs) if obj is not None]


def _defined(forgotten: Forgotten) -> Iterator[object]:
    """The modules of a generation, the functions and classes they define."""
    for module in forgotten.modules.values():
        yield module
        for value in list(vars(module).values()):
            if _is(value, types.FunctionType) and value.__globals__ is vars(module):
                yield value
            elif _is(value, type) and forgotten.defines(value):
                yield value


class Leaks:
    """Unhooks each forgotten generation, then checks that it is garbage.

    The check runs in a daemon thread once reloads have been quiet for
    ``delay`` seconds (or when the oldest unchecked generation is ``10 *
    delay`` old): one ``gc.collect()``, then weak references tell which
    generations are still alive. Each new one is reported once at WARNING,
    with the path from a module that stays to the old object. Only weak
    references to the old generations are kept.
    """

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay
        #: how many forgotten generations were still alive at the last check
        self.alive = 0
        self._records: list[_Record] = []
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._checking = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def forgotten(self, generation: Generation, number: int) -> None:
        """A reload succeeded: unhook generation ``number`` and check on it later."""
        if not generation:
            return
        unhook(generation)
        record = _Record(number, generation)
        with self._lock:
            self._records.append(record)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="memento-leaks", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Stop the checking thread (no check runs after this)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pending = [record for record in self._records if not record.checked]
                if not pending:
                    self._thread = None
                    return
            now = time.monotonic()
            due = min(pending[-1].at + self.delay, pending[0].at + 10 * self.delay)
            if due > now:
                self._stop.wait(due - now)
                continue
            try:
                self.check()
            except Exception:  # a check never breaks serving
                log.exception("checking the forgotten generations failed")
                with self._lock:
                    for record in pending:
                        record.checked = True

    def check(self) -> int:
        """Collect garbage, then count and report the old generations still alive.

        Generations forgotten less than ``delay`` seconds ago wait for a
        later check. Returns the count (also in :attr:`alive`).
        """
        with self._checking:  # one at a time: a report holds its objects while it looks
            return self._check()

    def _check(self) -> int:
        gc.collect()
        now = time.monotonic()
        with self._lock:
            due = [record for record in self._records if now - record.at >= self.delay]
        dead = {id(record) for record in due if not record.refs or not record.alive()}
        with self._lock:
            for record in due:
                record.checked = True
            self._records = [record for record in self._records if id(record) not in dead]
            alive = [record for record in self._records if record.checked]
        new = [record for record in alive if not record.reported]
        if new:
            self._report(new)
        self.alive = len(alive)  # after the report: whoever reads it can read the warning
        return len(alive)

    def _report(self, records: list[_Record]) -> None:
        for record in records:
            record.reported = True
        # Held (only) while searching: an id must not be reused meanwhile.
        held = [(obj, record) for record in records for obj in record.alive()]
        found = find_paths({id(obj): record for obj, record in held})
        del held
        causes: dict[str, list[int]] = {}
        for record in records:
            path = found.get(id(record))
            cause = describe(path) if path else _unnamed(record)
            causes.setdefault(cause, []).append(record.number)
        for cause, numbers in causes.items():
            if cause in self._warned:
                continue
            self._warned.add(cause)
            more = f" (and {len(numbers) - 1} more old generations)" if len(numbers) > 1 else ""
            log.warning("generation %d is still alive%s: %s", numbers[0], more, cause)


def _unnamed(record: _Record) -> str:
    objs = record.alive()
    label = _label(objs[0]) if objs else "its objects"
    return (
        f"{label} is held by something memento cannot follow from a module "
        "(a thread's stack, an extension module); stop or release it in "
        "__memento_unload__()"
    )


#: Objects whose references are never followed: they lead nowhere new.
_LEAVES = (str, bytes, int, float, complex, bool, types.CodeType, types.FrameType)


def find_paths(targets: dict[int, _Record]) -> dict[int, list[object]]:
    """Breadth first from the modules in ``sys.modules``: for each record with
    an object in ``targets`` (ids), the shortest reference path to one of them,
    keyed by the record's id."""
    records = {id(record) for record in targets.values()}
    paths: dict[int, list[object]] = {}
    parents: dict[int, tuple[object, int | None]] = {}
    queue: list[int] = []
    for module in list(sys.modules.values()):
        if not _is(module, types.ModuleType):
            continue
        namespace = vars(module)
        if id(namespace) not in parents:
            parents[id(namespace)] = (namespace, None)
            queue.append(id(namespace))
    while queue and len(paths) < len(records):
        following: list[int] = []
        for key in queue:
            obj = parents[key][0]
            for referent in gc.get_referents(obj):
                ident = id(referent)
                if ident in parents or _is(referent, _LEAVES):
                    continue
                parents[ident] = (referent, key)
                record = targets.get(ident)
                if record is not None:
                    paths.setdefault(id(record), _walk_back(parents, ident))
                    continue  # the path ends at the first old object
                following.append(ident)
        queue = following
    return paths


def _walk_back(parents: dict[int, tuple[object, int | None]], key: int | None) -> list[object]:
    path = []
    while key is not None:
        obj, key = parents[key]
        path.append(obj)
    return path[::-1]


def describe(path: list[object]) -> str:
    """``module.global -> ... -> the old object``, and what to do about it."""
    root = path[0]
    text = str(root.get("__name__", "?")) if _is(root, dict) else "?"
    registry = _registry(path)
    for before, obj in zip(path, path[1:-1]):
        step = _step(before, obj)
        if step:
            text += step
    target = path[-1]
    owner = _owner(target)
    holder = f"{registry} ({text})" if registry else text
    return (
        f"{holder} -> {_label(target)}; unhook it in the __memento_unload__() of "
        f"{owner}, or keep that module"
    )


def _registry(path: list[object]) -> str:
    for obj in path:
        module = type(obj).__module__
        if module.startswith("sqlalchemy.event"):
            return "sqlalchemy.event registry"
        if _is(obj, weakref.finalize):
            return "weakref.finalize registry"
        if module.startswith(("blinker", "django.dispatch")):
            return f"{module.partition('.')[0]} signal"
    return ""


def _step(container: object, obj: object) -> str:
    if _is(container, dict):
        for key, value in container.items():
            if value is obj:
                named = _is(key, str) and key.isidentifier()
                return f".{key}" if named else f"[{key!r:.40}]"
            if key is obj:
                return "[key]"
        return ""
    if _is(obj, dict):
        return ""  # an object's __dict__: its attribute names come next
    if _is(container, (list, tuple, set, frozenset)) or type(container).__name__ == "deque":
        return "[]"
    if _is(obj, (types.FunctionType, types.MethodType, type, types.ModuleType)):
        return f" -> {_label(obj)}"
    return f" -> {type(obj).__qualname__}"


def _label(obj: object) -> str:
    if _is(obj, types.ModuleType):
        return f"module {obj.__name__}"
    if _is(obj, types.MethodType):
        return f"listener {_qualname(obj.__func__)}"
    if _is(obj, (types.FunctionType, type)):
        return f"{'class' if _is(obj, type) else 'function'} {_qualname(obj)}"
    return f"{type(obj).__qualname__} object"


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"


def _owner(obj: object) -> str:
    if _is(obj, types.ModuleType):
        return obj.__name__
    if _is(obj, types.MethodType):
        obj = obj.__func__
    return str(getattr(obj, "__module__", None) or "its module")
