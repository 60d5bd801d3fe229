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
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Callable, NoReturn

from .modules import covers, is_protected, source_files
from .options import as_paths
from .tracking import Tracker, make_tracker

__all__ = [
    "BACKLOG",
    "LISTEN_FD",
    "RestartWatcher",
    "as_restart_on",
    "inherited_socket",
    "kept_files",
    "listening_socket",
    "reexec",
]

log = logging.getLogger("memento")

#: The environment variable naming the inherited listening socket's descriptor.
LISTEN_FD = "MEMENTO_LISTEN_FD"

#: How many connections wait in the kernel while the command restarts.
BACKLOG = 1024

#: Shortest time between two looks of a :class:`RestartWatcher`, in seconds.
MIN_INTERVAL = 0.1

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


def reexec(argv: Iterable[str], sock: socket.socket) -> NoReturn:
    """Replace this process with ``python -m memento ARGV``, handing it ``sock``.

    The interpreter's ``-W`` options are passed again; the environment and
    the current directory stay. Logs are flushed first. Raises
    :exc:`OSError` when the interpreter cannot be executed.
    """
    fd = sock.fileno()
    sock.set_inheritable(True)
    os.environ[LISTEN_FD] = str(fd)
    command = [
        sys.executable,
        *(f"-W{option}" for option in sys.warnoptions),
        "-m",
        "memento",
        *argv,
    ]
    log.debug("executing %s with the listening socket as descriptor %d", command, fd)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        os.execv(sys.executable, command)
    except OSError:
        os.environ.pop(LISTEN_FD, None)
        sock.set_inheritable(False)
        raise
    raise AssertionError("os.execv returned")  # pragma: no cover


def as_restart_on(entries: Iterable[str]) -> tuple[str, ...]:
    """Read ``--restart-on`` entries as absolute paths and glob patterns, by
    the ``watch`` option's rules (:func:`memento.options.as_paths`)."""
    return as_paths(list(entries), "--restart-on")


def kept_files(names: Iterable[str], loaded: Mapping[str, object] | None = None) -> set[str]:
    """The source files of the user's modules that ``names`` keep from being forgotten.

    That is the modules in ``loaded`` (default :data:`sys.modules`) named by
    ``names`` or under one of them, leaving out what is protected anyway
    (the standard library, installed distributions, extension modules).
    """
    names = tuple(names)
    if not names:
        return set()
    if loaded is None:
        loaded = sys.modules
    kept = {
        name: module
        for name, module in list(loaded.items())
        if covers(names, name) and not is_protected(name, module)
    }
    return source_files(kept)


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
        self._modules_seen = 0
        self._looked_ns = 0
        self._rescan = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"RestartWatcher({self.patterns!r}, {self.kept!r}, interval={self.interval!r})"

    def start(self, *, since_ns: int | None = None) -> None:
        """Stamp the files now and start looking.

        A file modified between ``since_ns`` (a :func:`time.time_ns` value,
        such as the time the application started loading) and now counts as
        changed.
        """
        if self._thread is not None:
            raise RuntimeError("restart watcher: already started")
        self._tracker = make_tracker(0, events=self._events)
        self._modules_seen, self._looked_ns = len(sys.modules), time.time_ns()
        self._files = kept_files(self.kept)
        self._tracker.track(self._files, self.patterns, since_ns=since_ns)
        self._thread = threading.Thread(target=self._run, name="memento-restart", daemon=True)
        self._thread.start()

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
        while not self._stop.wait(self.interval):
            try:
                changed = self._look()
            except Exception:
                log.exception("restart watcher failed to look at the files")
                continue
            if changed:
                self.changed = tuple(sorted(changed))
                log.info("restarting the process (changed: %s)", _describe(self.changed))
                self._on_change()
                return

    def _look(self) -> set[str]:
        assert self._tracker is not None
        if self._rescan.is_set() or len(sys.modules) != self._modules_seen:
            self._follow_kept(self._tracker)
        return self._tracker.changed()

    def _follow_kept(self, tracker: Tracker) -> None:
        """Track kept modules imported since the last look."""
        self._rescan.clear()
        now, self._modules_seen = time.time_ns(), len(sys.modules)
        new = kept_files(self.kept) - self._files
        if new:
            # edited after the last look: perhaps after the import read it
            tracker.add(new, since_ns=self._looked_ns)
            self._files |= new
            log.debug("restart watcher: tracking %d more files", len(new))
        self._looked_ns = now


def _describe(paths: Iterable[str]) -> str:
    shown = []
    for path in paths:
        relative = os.path.relpath(path)
        shown.append(path if relative.startswith("..") else relative)
    return ", ".join(shown)
