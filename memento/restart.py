"""Re-execute the command when a change cannot be reloaded in process, keeping its socket.

Some edits cannot be reloaded in process: a module that is never forgotten
(a ``--keep`` name, an ``--except`` name with ``--assassin``) or a file the
application only reads at start (``--restart-on '*.ini'``). For those the
command runs itself again, and no request is refused meanwhile:

* The command owns the listening socket (:func:`listening_socket`). Each
  server serves on a duplicate of its descriptor, so closing a server (as
  waitress and wsgiref do when they stop) never closes the socket itself.
* A :class:`RestartWatcher` looks at the files in a ``memento-restart``
  daemon thread and, on a change, logs it and calls ``on_change`` once: the
  command passes the server's ``stop()``. waitress runs its loop in the main
  thread a step at a time and checks a flag that ``stop()`` sets (pulling
  waitress's trigger to wake the loop); wsgiref's ``serve_forever()`` is
  ended by ``shutdown()``, which is safe from another thread. Either way the
  main thread stops accepting (new connections wait in the kernel's backlog),
  lets the requests in flight finish within a bound, and returns.
* :func:`reexec` then runs in the main thread: it makes the socket's
  descriptor inheritable, names it in :data:`LISTEN_FD`, flushes the logs and
  replaces the process with ``python -m memento`` and the same arguments.
  The process id stays the same, so Ctrl-C and SIGTERM still reach it.
* The new process adopts the socket (:func:`inherited_socket`) instead of
  binding one, loads the application, and accepts what waited in the backlog.

Nothing edited meanwhile is lost. Just before executing, the old process
takes a :class:`Handoff` (:meth:`RestartWatcher.hand_off`): the time, and the
stamps of the files that call for a restart. It then deletes the bytecode of
the changed files and any bytecode older than its source among the user's
modules: CPython would accept a ``.pyc`` whose source changed within the
same second at the same size. The new process reads the handoff from
:data:`HANDOFF`; a file calling for a restart whose stamp differs makes it
restart again, and its middleware reloads, on the first request, the modules
edited since the handoff's time.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Callable, NamedTuple, NoReturn

from .modules import compiled_as_is, covers, describe, discard_bytecode, source_files, user_modules
from .options import as_paths
from .tracking import (
    CLOCK_SLACK_NS,
    Matcher,
    PollingTracker,
    Stamp,
    Tracker,
    expand,
    make_tracker,
)

__all__ = [
    "BACKLOG",
    "HANDOFF",
    "LISTEN_FD",
    "Handoff",
    "RestartWatcher",
    "as_restart_on",
    "inherited_handoff",
    "inherited_socket",
    "kept_files",
    "listening_socket",
    "memento_command",
    "reexec",
    "restart_modules",
]

log = logging.getLogger("memento")

#: The environment variable naming the inherited listening socket's descriptor.
LISTEN_FD = "MEMENTO_LISTEN_FD"

#: The environment variable handing a :class:`Handoff` to the new process.
HANDOFF = "MEMENTO_HANDOFF"

#: How many connections wait in the kernel while the command restarts.
BACKLOG = 1024

#: Shortest time between two looks of a :class:`RestartWatcher`, in seconds.
MIN_INTERVAL = 0.1

#: How often a :class:`RestartWatcher` looks for file events, in seconds.
EVENT_STEP = 0.02

#: Longest :meth:`RestartWatcher.close` waits for its thread, in seconds.
STOP_TIMEOUT = 5.0


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind a TCP socket to ``host`` and ``port`` (0: any free port) and listen.

    A host name is bound to its first IPv4 address, else to its first IPv6
    one. ``SO_REUSEADDR`` is set, the backlog is :data:`BACKLOG`; the
    descriptor is not inheritable until :func:`reexec`. Raises
    :exc:`OSError` when the address cannot be resolved or bound.
    """
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    found.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, address = found[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def inherited_socket() -> socket.socket | None:
    """The listening socket a previous process left in :data:`LISTEN_FD`, if any.

    The variable is removed from the environment, so processes the
    application starts never take it for theirs, and the descriptor is made
    non-inheritable again. Raises :exc:`ValueError` when the variable does
    not name a listening TCP socket.
    """
    value = os.environ.pop(LISTEN_FD, None)
    if value is None:
        return None
    try:
        fd = int(value)
        sock = socket.socket(fileno=fd)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{LISTEN_FD}: expected a socket's descriptor, got {value!r}") from exc
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()
        raise ValueError(f"{LISTEN_FD}: descriptor {value!r} is not a listening TCP socket")
    sock.set_inheritable(False)
    # waitress left it non-blocking; the socket object must agree with the descriptor
    sock.setblocking(True)
    log.debug("serving on the listening socket inherited as descriptor %d", fd)
    return sock


class Handoff(NamedTuple):
    """What a process saw just before it restarted, for the new one to compare with.

    ``taken_ns``: when, a :func:`time.time_ns` value; ``stamps``: the files
    calling for a restart as they were then (``None``: missing).
    """

    taken_ns: int
    stamps: dict[str, Stamp | None]

    @classmethod
    def take(cls, files: Iterable[str]) -> Handoff:
        """The time now, then the stamps of ``files``."""
        taken_ns = time.time_ns()
        return cls(taken_ns, {path: Stamp.of(path) for path in files})

    def since_ns(self) -> int:
        """The earliest modification time of an edit made after the handoff: file
        systems stamp with a clock that may lag :func:`time.time_ns`."""
        return self.taken_ns - CLOCK_SLACK_NS

    def changed(self) -> set[str]:
        """The files whose stamps differ now."""
        return {path for path, stamp in self.stamps.items() if Stamp.of(path) != stamp}

    def encode(self) -> str:
        stamps = {
            path: None if stamp is None else list(stamp) for path, stamp in self.stamps.items()
        }
        return json.dumps({"taken_ns": self.taken_ns, "stamps": stamps})

    @classmethod
    def decode(cls, value: str) -> Handoff:
        """Read :meth:`encode`'s text; :exc:`ValueError` when it is not."""
        try:
            data = json.loads(value)
            stamps = {
                str(path): None if stamp is None else Stamp(*map(int, stamp))
                for path, stamp in data["stamps"].items()
            }
            return cls(int(data["taken_ns"]), stamps)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(
                f"{HANDOFF}: expected a restart's handoff, got {value[:80]!r}"
            ) from exc


def inherited_handoff() -> Handoff | None:
    """The :class:`Handoff` a previous process left in :data:`HANDOFF`, if any.

    The variable is removed from the environment. Raises :exc:`ValueError`
    when it cannot be read.
    """
    value = os.environ.pop(HANDOFF, None)
    return None if value is None else Handoff.decode(value)


def memento_command(argv: Iterable[str]) -> list[str]:
    """``python -m memento ARGV``, with this interpreter and its ``-W`` options."""
    warnings = (f"-W{option}" for option in sys.warnoptions)
    return [sys.executable, *warnings, "-m", "memento", *argv]


def reexec(
    command: Sequence[str], sock: socket.socket, handoff: Handoff | None = None
) -> NoReturn:
    """Replace this process with ``command`` (the interpreter and its
    arguments, see :func:`memento_command`), handing it ``sock`` and ``handoff``.

    The environment and the current directory stay. Logs are flushed first.
    Raises :exc:`OSError` when the interpreter cannot be executed.
    """
    fd = sock.fileno()
    sock.set_inheritable(True)
    os.environ[LISTEN_FD] = str(fd)
    if handoff is not None:
        os.environ[HANDOFF] = handoff.encode()
    log.debug("executing %s with the listening socket as descriptor %d", command, fd)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        os.execv(command[0], command)
    except OSError:
        os.environ.pop(LISTEN_FD, None)
        os.environ.pop(HANDOFF, None)
        sock.set_inheritable(False)
        raise
    raise AssertionError("os.execv returned")  # pragma: no cover


def as_restart_on(entries: Iterable[str]) -> tuple[str, ...]:
    """Read ``--restart-on`` entries as absolute paths and glob patterns, by
    the ``watch`` option's rules (:func:`memento.options.as_paths`)."""
    return as_paths(list(entries), "--restart-on")


def restart_modules(
    patterns: Iterable[str], search_path: Iterable[object] | None = None
) -> tuple[str, ...]:
    """The names of the modules whose source files ``patterns`` cover now.

    They are left to restarts: reloaded in process first, they would serve
    a mix of old and new code until the restart. A package's ``__init__.py``
    is left out (keeping the package would keep all its submodules).
    ``search_path`` defaults to :data:`sys.path`.
    """
    entries = sys.path if search_path is None else search_path
    roots = [
        os.path.join(os.path.abspath(entry), "") for entry in entries if isinstance(entry, str)
    ]
    names = set()
    for path in expand(patterns, Matcher()):
        stem, extension = os.path.splitext(path)
        if extension != ".py" or os.path.basename(stem) == "__init__":
            continue
        for root in roots:
            parts = stem[len(root) :].split(os.sep) if stem.startswith(root) else []
            if parts and all(part.isidentifier() for part in parts):
                names.add(".".join(parts))
                break
    return tuple(sorted(names))


def kept_files(names: Iterable[str], loaded: Mapping[str, object] | None = None) -> set[str]:
    """The source files of the user's modules that ``names`` keep from being forgotten.

    That is the modules in ``loaded`` (default :data:`sys.modules`) named by
    ``names`` or under one of them, leaving out what is protected anyway
    (the standard library, installed distributions, extension modules).
    """
    names = tuple(names)
    if not names:
        return set()
    user = user_modules(loaded)
    return source_files({name: module for name, module in user.items() if covers(names, name)})


class RestartWatcher:
    """Call ``on_change()`` once when something only a restart renews has changed.

    ``patterns`` are files, directories and glob patterns (see
    :func:`as_restart_on`); ``kept`` are module names whose modules are never
    forgotten (:func:`kept_files`): their source files are tracked, and so
    are those of kept modules imported later (:meth:`rescan`, or whenever
    :data:`sys.modules` grows). A ``memento-restart`` daemon thread looks
    every ``interval`` seconds (at least :data:`MIN_INTERVAL`), with file
    events when ``events`` allows (see :func:`memento.tracking.make_tracker`).
    After the call, :attr:`changed` holds the paths that changed and the
    thread ends.
    """

    def __init__(
        self,
        on_change: Callable[[], object],
        patterns: Iterable[str] = (),
        kept: Iterable[str] = (),
        *,
        interval: float = 0.3,
        events: bool | None = None,
    ) -> None:
        self.patterns = tuple(patterns)
        self.kept = tuple(kept)
        self.interval = max(interval, MIN_INTERVAL)
        self.changed: tuple[str, ...] = ()
        self._on_change = on_change
        self._events = events
        self._tracker: Tracker | None = None
        self._files: set[str] = set()
        self._carried: set[str] = set()
        self._carrying = threading.Lock()
        self._modules_seen = 0
        self._looked_ns = 0
        self._rescan = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"RestartWatcher({self.patterns!r}, {self.kept!r}, interval={self.interval!r})"

    def start(self, *, since_ns: int | None = None, handoff: Handoff | None = None) -> None:
        """Stamp the files now and start looking.

        A file modified between ``since_ns`` (a :func:`time.time_ns` value,
        such as the time the application started loading) and now counts as
        changed, and so does a file whose stamp differs from the one in
        ``handoff`` (edited while the process restarted).
        """
        if self._thread is not None:
            raise RuntimeError("restart watcher: already started")
        self._tracker = make_tracker(self.interval, events=self._events)
        self._modules_seen, self._looked_ns = len(sys.modules), time.time_ns()
        self._files = kept_files(self.kept)
        self._tracker.track(self._files, self.patterns, since_ns=since_ns)
        if handoff is not None:
            self._carried = handoff.changed()
        self._thread = threading.Thread(target=self._run, name="memento-restart", daemon=True)
        self._thread.start()

    def files(self) -> set[str]:
        """The files whose change calls for a restart, now."""
        return kept_files(self.kept) | expand(self.patterns, Matcher())

    def hand_off(self) -> Handoff:
        """Prepare the new process: what it should compare with, and fresh bytecode.

        Takes the :class:`Handoff`, then deletes the bytecode of the changed
        files and any bytecode older than its source among the user's
        modules, so that the new process compiles what is on disk.
        """
        handoff = Handoff.take(self.files())
        discard_bytecode(self.changed)
        discard_bytecode(source_files(user_modules()), only_stale=True)
        return handoff

    def restart_for(self, paths: Iterable[str]) -> None:
        """Restart at the next look for ``paths``, seen changed by someone else."""
        with self._carrying:
            self._carried = self._carried | set(paths)

    def rescan(self) -> None:
        """Look for newly imported kept modules at the next look (after a reload)."""
        self._rescan.set()

    def close(self) -> None:
        """Stop the thread, waiting at most :data:`STOP_TIMEOUT` seconds; idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                log.warning("restart watcher still running after %.1f s", STOP_TIMEOUT)
        if self._tracker is not None:
            self._tracker.close()

    def __enter__(self) -> RestartWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        # File events are looked for often, so that a restart comes at once;
        # polling looks every interval.
        step = self.interval if isinstance(self._tracker, PollingTracker) else EVENT_STEP
        while not self._stop.wait(step):
            try:
                changed = self._look()
            except Exception:
                log.exception("restart watcher failed to look at the files")
                continue
            if changed:
                self.changed = tuple(sorted(changed))
                log.info("restarting the process (changed: %s)", describe(self.changed))
                self._on_change()
                return

    def _look(self) -> set[str]:
        tracker = self._tracker
        assert tracker is not None
        if self._rescan.is_set() or len(sys.modules) != self._modules_seen:
            self._follow_kept(tracker)
        if not (self._carried or tracker.due()):
            return set()
        changed = tracker.changed()
        with self._carrying:
            found, self._carried = changed | self._carried, set()
        return found

    def _follow_kept(self, tracker: Tracker) -> None:
        """Track kept modules imported since the last look."""
        self._rescan.clear()
        now, self._modules_seen = time.time_ns(), len(sys.modules)
        loaded = dict(sys.modules)
        # a module being imported may not have read its file yet: next look
        importing = {name for name, module in loaded.items() if _initializing(module)}
        if importing:
            self._rescan.set()
        new = kept_files(self.kept, {n: m for n, m in loaded.items() if n not in importing})
        new -= self._files
        if new:
            # edited after the last look: perhaps after the import read it,
            # unless its bytecode shows the import compiled it as it is now
            current = {path for path in new if compiled_as_is(path)}
            tracker.add(current)
            tracker.add(new - current, since_ns=self._looked_ns)
            self._files |= new
            log.debug("restart watcher: tracking %d more files", len(new))
        if not importing:
            self._looked_ns = now


def _initializing(module: object) -> bool:
    """Whether the import system is still executing ``module`` (its spec says so)."""
    return getattr(getattr(module, "__spec__", None), "_initializing", False) is True

