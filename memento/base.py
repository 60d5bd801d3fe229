"""The reloading WSGI middleware both policies share."""

from __future__ import annotations

import importlib
import linecache
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Callable, NoReturn, TypeVar

from . import errorpage, graph, integrations, live, modules, resolver
from .background import Worker
from .gate import RequestGate
from .leaks import Leaks
from .modules import Generation
from .options import Options
from .patch import Patcher
from .tracking import Tracker, make_tracker

log = logging.getLogger("memento")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]
Hook = TypeVar("Hook", bound=Callable[["ReloadInfo"], Any])

#: Longest a reload started by the watcher waits for open responses to
#: close, in seconds; past that, the next request reloads.
AHEAD_WAIT = 1.0


@dataclass(frozen=True)
class ReloadInfo:
    """What one (re)load did.

    ``changed``: the paths that triggered it; ``forgotten``: the module names
    forgotten; ``duration``: seconds; ``error``: the exception that made it
    fail, or ``None``; ``generation``: the number of the code generation
    serving after it (unchanged by a failure); ``path``: how the edit was
    brought in: ``"functions"`` (code swapped in place), ``"dependents"``,
    ``"all"`` (modules forgotten and imported) or ``"refresh"`` (a framework's
    caches reset).
    """

    changed: tuple[str, ...] = ()
    forgotten: tuple[str, ...] = ()
    duration: float = 0.0
    error: BaseException | None = None
    generation: int = 0
    path: str = "all"


@dataclass(frozen=True)
class Stats:
    """Counters: successful ``reloads``, failed ``failures``, the ``last``
    :class:`ReloadInfo`, the ``generation`` serving now (1 after the first
    load) and how many forgotten generations were still ``alive`` at the last
    check (see the documentation: Concepts, "Nothing left behind")."""

    reloads: int = 0
    failures: int = 0
    last: ReloadInfo | None = None
    generation: int = 0
    alive: int = 0


class ReloadingMiddleware:
    """Serve a WSGI application, re-importing its code when it changes.

    Subclasses say which modules a reload forgets (:meth:`_candidates`);
    everything else (when to reload, the request gate, failures, hooks)
    lives here.
    """

    def __init__(self, app: str, *, turn_on: bool = True, **options: Any) -> None:
        self.resolver = resolver.parse(app)
        self.options = Options.read(**options)
        self._gate = RequestGate()
        self._state = threading.Lock()
        self._looking = threading.Lock()
        self._calls = threading.local()
        self._failure_tb: TracebackType | None = None
        self._modules_seen = 0
        self._loaded_ns = self._load_started_ns = 0
        self._app: WSGIApp | None = None
        self._failure: ReloadInfo | None = None
        self._generation: Generation = {}
        self._handlers: list[modules.HandlerRecord] = []
        self._pending: set[str] = set()
        self._unloaded: set[str] = set()
        self._requested = False
        self._integration = integrations.Integration()
        self._held_changed: set[str] = set()
        self._tracker: Tracker | None = None
        self._on = False
        self._stats = Stats()
        self._leaks = Leaks()
        self._patcher = Patcher(self.options.scope == "functions")
        self._ahead = Worker(self._reload_ahead, "memento-reloader")
        self._before: list[Callable[[ReloadInfo], Any]] = []
        self._after: list[Callable[[ReloadInfo], Any]] = []
        self._live = None if not self.options.live else live.Live(
            self, lambda: self._on and self._wants_load() and self._load(), self.options.live
        )
        if turn_on:
            self.turn_on()

    # -- public API --------------------------------------------------------

    @property
    def reloading(self) -> bool:
        """Whether reloading is turned on."""
        return self._on

    @property
    def held_modules(self) -> frozenset[str]:
        """Module names the framework holds for the life of the process (Django's
        app registry): never forgotten, an edit of them needs a restart."""
        return self._integration.held()

    @property
    def stats(self) -> Stats:
        """A snapshot of the reload counters."""
        return replace(self._stats, alive=self._leaks.alive)

    def turn_on(self) -> None:
        """Turn reloading on: from now on changes are looked for."""
        with self._state:
            self._on = True
            if self._tracker is None:
                self._tracker = self._make_tracker()
            if self._app is not None:
                # Files edited while reloading was off are newer than the load.
                self._generation = self._forgettable()
                self._track(self._loaded_ns)

    def turn_off(self) -> None:
        """Turn reloading off: a thin pass-through, no file checks, no forgetting."""
        with self._state:
            self._on = False
            tracker, self._tracker = self._tracker, None
        # The watcher first: once its thread has ended nothing wakes the
        # reloader again. Outside the lock: a reload under way takes it to finish.
        if tracker is not None:
            tracker.close()
        self._ahead.stop()

    def reload(self) -> None:
        """Forget and re-resolve the application before the next request.

        Safe to call from a signal handler: it only sets a flag.
        """
        self._requested = True

    def before_reload(self, fn: Hook) -> Hook:
        """Register ``fn(info)`` to run before each reload; usable as a decorator."""
        self._before.append(fn)
        return fn

    def after_reload(self, fn: Hook) -> Hook:
        """Register ``fn(info)`` to run after each reload, failed ones too."""
        self._after.append(fn)
        return fn

    def resolve(self, *, since_ns: int | None = None) -> WSGIApp:
        """The application now served, importing it first if needed.

        ``since_ns`` (a :func:`time.time_ns` value): importing it now, files
        modified since then count as changed (a restarted process passes
        the time the previous one last looked).
        """
        if self._app is None and self._failure is None:
            self._load(since_ns)
        if self._app is None and self._failure is not None:
            self._raise_failure(self._failure)
        assert self._app is not None
        return self._app

    def close(self) -> None:
        """Stop any watcher thread; the middleware goes on serving, turned off."""
        self.turn_off()
        self._leaks.close()
        if self._live is not None:
            self._live.release()

    def __enter__(self) -> ReloadingMiddleware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- WSGI --------------------------------------------------------------

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if not self._on:
            return self.resolve()(environ, start_response)
        if getattr(self._calls, "depth", 0):
            # The application calls itself (a sub-request): it is served by
            # the generation already serving the outer request.
            return self._call(self._app, self._failure, environ, start_response)
        if self._live is not None:  # its endpoint is answered outside the gate
            return self._live(environ, start_response, self._respond)
        return self._respond(environ, start_response)

    def _respond(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one outer request: reload first when due, then call through the gate."""
        if self._wants_load():
            self._load()
        token = self._gate.enter()
        try:
            result = self._call(self._app, self._failure, environ, start_response)
        except BaseException:
            self._gate.leave(token)
            raise
        if _is_file_wrapper(result, environ):
            # The server sends the file by itself, running no application
            # code: the request is over, and the server keeps its fast path.
            self._gate.leave(token)
            return result
        return closing(result, lambda: self._gate.leave(token))

    def _call(
        self,
        app: WSGIApp | None,
        failure: ReloadInfo | None,
        environ: dict,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        if app is None:
            return self._answer_failure(failure, environ, start_response)
        self._calls.depth = getattr(self._calls, "depth", 0) + 1
        try:
            return app(environ, start_response)
        finally:
            self._calls.depth -= 1

    # -- what subclasses decide ---------------------------------------------

    def _candidates(self) -> Generation:
        """The modules this policy would forget now."""
        raise NotImplementedError

    def _forgettable(self) -> Generation:
        """The modules a reload would forget now: the policy's, less what the framework holds."""
        owned, held = self._candidates(), self._integration.held()
        return {name: module for name, module in owned.items() if name not in held}

    # -- reloading ---------------------------------------------------------

    def _make_tracker(self) -> Tracker | None:
        if self.options.reload_on == "request":
            return None
        if self.options.reload_on == "manual" and not self.options.watch:
            return None
        return make_tracker(
            self.options.interval, events=self.options.events, on_change=self._ahead.wake
        )

    def _wants_load(self) -> bool:
        tracker = self._tracker
        if (
            tracker is not None
            and not tracker.due()
            and self._app is not None
            and not (self._pending or self._requested or self._looking.locked())
            and len(sys.modules) == self._modules_seen
            and self.options.reload_on != "request"
        ):
            return False  # the common case, without taking a lock
        # One thread looks at a time, and the others wait for its answer: a
        # request that comes while a change is being looked at is served
        # after the reload, never before it.
        with self._looking:
            tracker = self._tracker
            if tracker is not None and len(sys.modules) != self._modules_seen:
                self._adopt(tracker)
            changed = tracker.changed() if tracker is not None else ()
            with self._state:
                self._pending.update(changed)
                return self._due()

    def _adopt(self, tracker: Tracker) -> None:
        """Track modules the application imported while serving (lazy imports)."""
        if self._gate.reloading:
            return  # a reload is importing them: it tracks its own generation
        self._modules_seen = len(sys.modules)
        if self._app is None or self.options.reload_on != "change":
            return
        with self._state:
            late = {
                name: module
                for name, module in self._forgettable().items()
                if name not in self._generation
            }
            self._generation.update(late)
        if late:
            tracker.add(modules.source_files(late), since_ns=self._loaded_ns)

    def _due(self) -> bool:
        return (
            bool(self._pending)
            or self._requested
            or (self._app is None and self._failure is None)
            or self.options.reload_on == "request"
        )

    def _reload_ahead(self) -> None:
        """The watcher saw changes settle: reload now, before the next request
        (run by the ``memento-reloader`` thread). Requests that come meanwhile
        wait for it, or reload themselves while responses are still open."""
        if self._on and (self._app is not None or self._failure is not None):
            if self._wants_load():
                self._load(ahead=True)

    def _load(self, since_ns: int | None = None, *, ahead: bool = False) -> None:
        # Edits made from now on (while open responses drain, while modules
        # import) are either imported by this reload or reported after it:
        # tracking again compares with the stamps last looked at.
        self._load_started_ns = time.time_ns()
        since = self._load_started_ns if since_ns is None else since_ns
        drain = min(self.options.drain_timeout, AHEAD_WAIT) if ahead else self.options.drain_timeout
        with self._gate.exclusive(drain, idle=ahead) as claimed:
            if not claimed:
                return  # responses stayed open: the next request reloads
            with self._state:
                if self._app is not None and not (self._on and self._due()):
                    return
                # Changes a failed reload restored the old modules over are
                # still changes: keep=True served them, nothing imported them.
                changed = tuple(sorted(self._pending | self._unloaded))
                self._pending.clear()
                self._requested = False
            self._reload(changed, since)

    def _reload(self, changed: tuple[str, ...], since: int) -> None:
        started = time.perf_counter()
        first = self._stats.generation == 0
        if not first and self._serves_without_import(changed, since):
            return
        if not first and self._patched(changed, since):
            return
        old = {} if first else self._to_forget(changed)
        info = ReloadInfo(
            changed, tuple(sorted(old)), 0.0, None, self._stats.generation, self._path(old)
        )
        if not first:
            self._run_hooks(self._before, info)
        kept = self._kept_children(old)
        modules.forget(old)
        leaving = [record for record in self._handlers if record[2] in old]
        self._handlers = [record for record in self._handlers if record[2] not in old]
        modules.detach_handlers(leaving)
        modules.warn_leftover_threads(old)
        modules.discard_bytecode(changed)
        # A module edited without being seen (reload_on="manual" or
        # "request", an edit made while it was imported) has a source newer
        # than its bytecode.
        modules.discard_bytecode(modules.source_files(old), only_stale=True)
        importlib.invalidate_caches()
        linecache.checkcache()
        before = set(sys.modules)
        with modules.recording_handlers() as handlers, self._patcher.recording():
            try:
                with modules.binding(kept):
                    if not first:
                        self._integration.before_import()
                    app: WSGIApp | None = self.resolver.resolve()
                self._integration = integrations.detect(
                    app, self._integration, self.resolver.module
                )
                self._integration.after_import()
            except BaseException as exc:  # SystemExit from argparse at import, too
                app, info = None, replace(info, error=exc)
        info = replace(info, duration=time.perf_counter() - started)
        if app is None:
            self._fail(info, old, kept, set(sys.modules) - before, handlers + leaving, since)
            if isinstance(info.error, KeyboardInterrupt):
                raise info.error
        else:
            modules.attach(kept)
            info = replace(info, generation=self._stats.generation + 1)
            modules.close_handlers(leaving)
            self._leaks.forgotten(old, info.generation - 1)
            self._succeed(app, info, handlers, since, first, set(sys.modules) - before)
        if not first:
            self._run_hooks(self._after, info)

    def _serves_without_import(self, changed: tuple[str, ...], since: int) -> bool:
        """Serve edits that need no import: a restart's page, or a framework's cache reset."""
        blocked = integrations.blocked(self._integration, changed, self._held_changed)
        if blocked is not None:
            self._held_changed.update(blocked.paths)
            self._hold(ReloadInfo(changed, (), 0.0, blocked, self._stats.generation), since)
            return True
        if self._app is None or self._unloaded or not self._integration.refreshes(changed):
            return False
        started = time.perf_counter()
        return self._in_place(changed, since, started, "refresh", self._integration.refresh)

    def _patched(self, changed: tuple[str, ...], since: int) -> bool:
        """``scope="functions"``: serve edits of function bodies by swapping their code."""
        if self._app is None or self._unloaded:
            return False
        started = time.perf_counter()
        plan = self._patcher.plan(changed, self._generation)
        if plan is None:
            return False
        log.debug("patching %s in place", plan.describe())
        return self._in_place(
            changed, since, started, "functions", lambda _: self._patcher.apply(plan)
        )

    def _in_place(
        self,
        changed: tuple[str, ...],
        since: int,
        started: float,
        path: str,
        work: Callable[[tuple[str, ...]], object],
    ) -> bool:
        """A new generation without an import: ``work(changed)`` swaps code or
        resets caches. ``False`` when it failed: the edit is then imported."""
        assert self._app is not None
        info = ReloadInfo(changed, (), 0.0, None, self._stats.generation, path)
        self._run_hooks(self._before, info)
        try:
            work(changed)
        except Exception:
            log.exception("%s in place failed, importing the edit instead", path)
            return False
        info = replace(
            info, duration=time.perf_counter() - started, generation=self._stats.generation + 1
        )
        self._succeed(self._app, info, [], since, False)
        self._run_hooks(self._after, info)
        return True

    def _path(self, old: Generation) -> str:
        """What ``_to_forget`` chose: ``"all"`` or a part of it."""
        if self.options.scope == "all" or not old or old.keys() >= self._forgettable().keys():
            return "all"
        return "dependents"

    def _hold(self, info: ReloadInfo, since: int) -> None:
        """Never serve an edit that needs a restart as if it were reloaded."""
        keep = self.options.on_error == "keep"
        log.warning("%s%s", info.error, "; serving the code loaded before" if keep else "")
        with self._state:
            self._stats = replace(self._stats, failures=self._stats.failures + 1, last=info)
            if not keep:
                self._app, self._failure, self._failure_tb = None, info, None
            self._track(since)
        self._run_hooks(self._after, info)

    def _to_forget(self, changed: tuple[str, ...]) -> Generation:
        owned = self._forgettable()
        if self.options.scope == "all":
            return owned
        names = graph.to_forget(
            owned, changed, self.resolver.module, roots=self._integration.roots()
        )
        if names is None:
            log.debug("scope dependents: cannot tell the dependencies, forgetting all")
            return owned
        return {name: owned[name] for name in names}

    def _succeed(
        self,
        app: WSGIApp,
        info: ReloadInfo,
        handlers: list[modules.HandlerRecord],
        since: int,
        first: bool,
        imported: Collection[str] = (),
    ) -> None:
        """``imported``: the names the reload added to ``sys.modules``."""
        with self._state:
            self._app, self._failure = app, None
            self._unloaded.clear()
            self._generation = self._forgettable()
            self._handlers += [record for record in handlers if record[2] in self._generation]
            self._stats = Stats(
                self._stats.reloads + (not first), self._stats.failures, info, info.generation
            )
            self._track(since)
            self._modules_seen, self._loaded_ns = len(sys.modules), since
        self._patcher.loaded(self._generation, since)
        if self.options.scope != "all" and info.path not in _IN_PLACE:
            self._warm_graph()
        if first:
            log.info(
                "loaded %s (%d modules) in %.1f ms",
                self.resolver.statement,
                len(self._generation),
                info.duration * 1000,
            )
        else:
            log.info(
                "reloaded %d modules in %.1f ms, generation %d%s (changed: %s)",
                len(self._generation.keys() & set(imported)),
                info.duration * 1000,
                info.generation,
                _IN_PLACE.get(info.path, ""),
                modules.describe(info.changed),
            )

    def _fail(
        self,
        info: ReloadInfo,
        old: Generation,
        kept: Generation,
        new: set[str],
        handlers: list[modules.HandlerRecord],
        since: int,
    ) -> None:
        """``handlers``: those of the forgotten generation, then of the failed import."""
        missing = _missing_module_files(info.error)
        half = self._owned({name: sys.modules[name] for name in new if name in sys.modules})
        modules.discard(half)
        keep = self.options.on_error == "keep" and self._app is not None
        restored = [record for record in handlers if record[2] in old] if keep else []
        dropped = [record for record in handlers if record not in restored]
        modules.detach_handlers(dropped)
        modules.close_handlers(dropped)
        if keep:
            modules.restore(old)
            modules.attach(kept)
            modules.reattach_handlers(restored)
        log.error(
            "%s failed%s (changed: %s)",
            "reload" if self._stats.generation else f"loading {self.resolver.statement}",
            ", serving the last good code" if keep else "",
            modules.describe(info.changed),
            exc_info=info.error,
        )
        with self._state:
            self._stats = replace(self._stats, failures=self._stats.failures + 1, last=info)
            self._handlers += restored
            if keep:
                self._unloaded.update(info.changed)
            if not keep:
                self._app, self._failure = None, info
                self._failure_tb = info.error.__traceback__ if info.error else None
            self._generation = self._forgettable()
            extra = modules.source_files(old) | modules.source_files(half) | missing
            self._track(since, extra | set(info.changed) | _error_files(info.error))

    def _warm_graph(self) -> None:
        """Read the new generation's imports now, not in the next reload."""
        generation, module = dict(self._generation), self.resolver.module

        def warm() -> None:
            try:
                graph.to_forget(generation, (), module)
            except Exception:  # only a cache: the next reload reads what it needs
                log.debug("reading the imports ahead failed", exc_info=True)

        threading.Thread(target=warm, name="memento-graph", daemon=True).start()

    def _owned(self, candidates: Generation) -> Generation:
        """Which of ``candidates`` this middleware would forget."""
        forgettable = self._forgettable()
        return {name: module for name, module in candidates.items() if name in forgettable}

    def _kept_children(self, old: Generation) -> Generation:
        """Modules that stay while their parent package is forgotten."""
        return {
            name: module
            for name, module in list(sys.modules.items())
            if name not in old and name.rpartition(".")[0] in old
        }

    def _track(self, since: int, extra: Iterable[str] = ()) -> None:
        if self._tracker is None:
            return
        files: set[str] = set()
        held: set[str] = set()
        integration = self._integration
        if self.options.reload_on == "change":
            files = modules.source_files(self._generation) | set(extra)
            held = modules.source_files(modules.snapshot(integration.held())) - files
        known = held & self._tracker.files
        watch = (*self.options.watch, *integration.watch())
        self._tracker.track(files | known, watch, since_ns=since)
        if held - known:
            # Tracked from the load that imported them on: compared with its
            # start, not with an earlier ``since`` (a restarted process is
            # told by the command which of them changed during the restart).
            self._tracker.add(held - known, since_ns=self._load_started_ns)

    def _run_hooks(self, hooks: list[Callable[[ReloadInfo], Any]], info: ReloadInfo) -> None:
        for hook in hooks:
            try:
                hook(info)
            except Exception:
                log.exception("reload hook %r failed", hook)

    def _raise_failure(self, failure: ReloadInfo) -> NoReturn:
        # The saved traceback: raising the same exception again and again
        # would otherwise grow it by this request's frames each time.
        assert failure.error is not None
        raise failure.error.with_traceback(self._failure_tb)

    def _answer_failure(
        self, failure: ReloadInfo | None, environ: dict, start_response: StartResponse
    ) -> Iterable[bytes]:
        assert failure is not None and failure.error is not None
        handler = self.options.on_error
        if callable(handler):
            return handler(failure, environ, start_response)
        if handler == "raise":
            self._raise_failure(failure)
        status, headers, body = errorpage.respond(
            failure.error,
            failure.changed,
            environ,
            self.options.show_tracebacks,
            failure.generation + 1,
        )
        start_response(status, headers)
        return [body]


#: How the log line says that nothing was imported.
_IN_PLACE = {"functions": ", code patched in place", "refresh": ", caches reset"}


def closing(iterable: Iterable[bytes], on_close: Callable[[], None]) -> ClosingResponse:
    """Wrap a response iterable; a sized one (a list) stays sized, so servers
    can still set Content-Length for a one-item body."""
    if hasattr(iterable, "__len__"):
        return SizedClosingResponse(iterable, on_close)
    return ClosingResponse(iterable, on_close)


class ClosingResponse:
    """A response iterable that runs ``on_close`` once, after the application's
    iterable was closed; iteration passes straight through (nothing buffered).
    Two threads closing it at once close it once."""

    __slots__ = ("_iterable", "_on_close", "_closed")

    def __init__(self, iterable: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._iterable = iterable
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._iterable)

    def close(self) -> None:
        # One lock for all responses, taken only here: no allocation per response.
        with _CLOSING:
            if self._closed:
                return
            self._closed = True
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


#: Makes "closed yet?" and "closed now" one step for two threads closing one response.
_CLOSING = threading.Lock()


def _missing_module_files(error: BaseException | None) -> set[str]:
    """Where a module that was not found would be created, to retry when it is."""
    if not isinstance(error, ImportError) or not error.name:
        return set()
    if isinstance(error, ModuleNotFoundError):
        parent, _, leaf = error.name.rpartition(".")
    else:  # "cannot import name 'views' from 'shop'": maybe a submodule to come
        found = re.match(r"cannot import name '(\w+)'", str(error))
        if found is None:
            return set()
        parent, leaf = error.name, found.group(1)
    if parent:
        folders = list(getattr(sys.modules.get(parent), "__path__", None) or ())
    else:
        entries = [os.path.abspath(entry) for entry in sys.path if isinstance(entry, str)]
        folders = [
            path for path in entries if os.path.isdir(path) and not modules.is_library_file(path)
        ]
    return {
        path
        for folder in folders
        for path in (os.path.join(folder, leaf + ".py"), os.path.join(folder, leaf, "__init__.py"))
    }


def _is_file_wrapper(result: object, environ: dict) -> bool:
    wrapper = environ.get("wsgi.file_wrapper")
    return isinstance(wrapper, type) and type(result) is wrapper


def _error_files(error: BaseException | None) -> set[str]:
    """User files named by a failed import: where to look for the fix."""
    files = set()
    if isinstance(error, SyntaxError) and error.filename:
        files.add(error.filename)
    tb: TracebackType | None = error.__traceback__ if error is not None else None
    while tb is not None:
        files.add(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    return {path for path in files if os.path.isabs(path) and not modules.is_library_file(path)}


class SizedClosingResponse(ClosingResponse):
    """A :class:`ClosingResponse` around an iterable with a length."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._iterable)  # type: ignore[arg-type]
