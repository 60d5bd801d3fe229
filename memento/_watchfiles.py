"""File-system events from :mod:`watchfiles`; the one module importing it.

On Linux the watcher thread reads inotify itself (:mod:`._inotify`): it
blocks until an event comes, where watchfiles wakes every step to look.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Callable, NamedTuple, Union

import watchfiles

from . import _inotify
from .tracking import (
    SETTLE,
    SETTLE_LIMIT,
    Matcher,
    Stamp,
    _glob_base,
    _glob_dirs,
    _split_watch,
    _StampTracker,
    _walk,
)

log = logging.getLogger("memento")

#: Longest :meth:`WatchfilesTracker.track` waits for a new watcher thread to
#: be set up, and :meth:`WatchfilesTracker.close` for it to end, in seconds.
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0

_RUST_TIMEOUT_MS = 1000
#: How long the watcher waits for more events before handing a batch over,
#: in milliseconds; bursts are gathered by :meth:`WatchfilesTracker._wait_for_quiet`.
_STEP_MS = 20


class _Layout(NamedTuple):
    """What the watcher thread looks at, worked out from the tracked entries."""

    exact: frozenset[str]  # source files and plain watch paths
    trees: tuple[str, ...]  # watch directories and glob bases: what happens below counts
    anchors: frozenset[str]  # missing directories on the way to a target
    dirs: frozenset[str]  # the directories watched, each without its subdirectories

    def counts(self, path: str, matcher: Matcher) -> bool:
        """Tell whether an event for ``path`` may change what is tracked."""
        if path in self.exact or path in self.anchors or path in self.dirs:
            return True
        for tree in self.trees:
            if path == tree:
                return True
            prefix = os.path.join(tree, "")
            if path.startswith(prefix):
                return not matcher.excluded(path[len(prefix) :])
        return False


def _lay_out(files: frozenset[str], watch: tuple[str, ...], matcher: Matcher) -> _Layout:
    plain, trees, patterns = _split_watch(watch)
    exact = files.union(plain)
    dirs: set[str] = set()
    wanted = {os.path.dirname(path) for path in exact}
    for tree in trees:
        dirs.update(dirpath for dirpath, _ in _walk(tree, matcher))
    bases = [_glob_base(pattern) for pattern in patterns]
    for pattern, base in zip(patterns, bases):
        if os.path.isdir(base):
            dirs.update(_glob_dirs(pattern, matcher))
        else:
            wanted.add(base)
    anchors: set[str] = set()
    dirs.update(_nearest_dir(path, anchors) for path in wanted)
    return _Layout(exact, tuple(trees + bases), frozenset(anchors), frozenset(dirs))


def _nearest_dir(path: str, missing: set[str]) -> str:
    """Return ``path`` or its closest existing ancestor; record the missing ones."""
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        missing.add(path)
        path = parent
    return path


class _StopSignal:
    """The ``stop_event`` given to watchfiles.

    watchfiles polls it once its watches are in place, then at every step:
    the first poll tells that no event can be lost any more.
    """

    def __init__(self, stop: _Stop, ready: threading.Event) -> None:
        self._stop = stop
        self._ready = ready

    def is_set(self) -> bool:
        if not self._ready.is_set():
            self._ready.set()
        return self._stop.is_set()


class WatchfilesTracker(_StampTracker):
    """Find changes from file-system events, read by a ``memento-watcher`` thread.

    A lone changed file is handed over about 2 ms after its event on Linux
    (inotify, read by the thread itself), about 30 ms elsewhere (the
    watchfiles step); ``on_change()`` is called from the thread when it
    is. When several changed, :meth:`changed` gathers events until none came for
    ``settle`` seconds, so a burst is one set. :meth:`changed` stats only
    the paths events were seen for,
    and nothing at all when there were none. After a fork (a preloading
    server), the child starts its own thread on its first :meth:`changed`
    and compares every stamp once. A watcher that fails (too many
    directories for the system, say) is logged, and until the next
    :meth:`track` every look compares all stamps instead.
    """

    def __init__(
        self,
        *,
        settle: float = SETTLE,
        matcher: Matcher | None = None,
        on_change: Callable[[], object] | None = None,
    ) -> None:
        if settle < 0:
            raise ValueError(f"settle: expected seconds >= 0, got {settle!r}")
        super().__init__(matcher)
        self.settle = settle
        self.on_change = on_change
        self._layout = _Layout(frozenset(), (), frozenset(), frozenset())
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._watching: frozenset[str] = frozenset()
        self._pid = os.getpid()
        self._failed = False
        self._recheck = False
        self._closed = False
        _trackers.add(self)

    def __repr__(self) -> str:
        return f"WatchfilesTracker(settle={self.settle!r})"

    def close(self) -> None:
        """Stop the watcher thread, waiting at most :data:`STOP_TIMEOUT` seconds."""
        with self._lock:
            self._closed = True
            self._stop_thread()

    def _retarget(self) -> None:
        self._relayout()
        with self._pending_lock:
            self._pending.clear()
        self._recheck = not self._ready.is_set()

    def _relayout(self, restart: bool = False) -> None:
        self._layout = _lay_out(self._files, self._watch, self.matcher)
        if restart or self._layout.dirs != self._watching or not self._running():
            self._start(self._layout.dirs)

    def _added(self, files: frozenset[str]) -> None:
        self._relayout()

    def _detect(self) -> set[str]:
        if self._closed:
            return set()
        if self._pid != os.getpid():
            # the thread stayed in the parent: events since the fork are lost
            with self._pending_lock:
                self._pending.clear()
            return self._refresh()
        if self._failed:
            return self._compare_all()
        if self._recheck and self._ready.is_set():
            self._recheck = False
            with self._pending_lock:
                self._pending.clear()
            return self._compare_all()
        pending = self._take_pending()
        if not pending:
            return set()
        if len(pending) > 1:
            pending |= self._wait_for_quiet()
        if pending <= self._layout.exact:
            return self._compare(pending)
        # a directory or glob changed: what it covers has to be listed again;
        # a watched directory that was replaced needs watching anew
        return self._refresh(restart=not pending.isdisjoint(self._layout.dirs))

    def _due(self) -> bool:
        return bool(
            self._pending
            or (self._recheck and self._ready.is_set())
            or self._failed
            or self._pid != os.getpid()
        ) and not self._closed

    def _take_pending(self) -> set[str]:
        with self._pending_lock:
            pending, self._pending = self._pending, set()
        return pending

    def _wait_for_quiet(self) -> set[str]:
        """Several files changed: a burst may still be under way. Gather its
        events until none came for ``settle`` seconds (at most SETTLE_LIMIT)."""
        more: set[str] = set()
        deadline = time.monotonic() + SETTLE_LIMIT
        while self.settle and time.monotonic() + self.settle <= deadline:
            time.sleep(self.settle)
            latest = self._take_pending()
            if not latest:
                break
            more |= latest
        return more

    def _refresh(self, restart: bool = False) -> set[str]:
        self._relayout(restart)
        self._recheck = not self._ready.is_set()
        return self._compare_all()

    def _compare(self, paths: set[str]) -> set[str]:
        current = {path: Stamp.of(path) for path in paths}
        found = {path for path, stamp in current.items() if self._stamps.get(path) != stamp}
        self._stamps.update(current)
        return found

    def _running(self) -> bool:
        return (
            self._thread is not None
            and self._thread.is_alive()
            and self._pid == os.getpid()
            and not self._failed
        )

    def _start(self, dirs: frozenset[str]) -> None:
        self._stop_thread()
        self._watching = dirs
        self._pid = os.getpid()
        self._failed = False
        # events the stopped thread had not handed over yet are lost: the
        # next full look at the stamps (once this thread is ready) covers them
        self._recheck = True
        if self._closed or not dirs:
            return
        self._stop = _inotify.Stop() if _inotify.available() else threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=({os.path.realpath(d): d for d in dirs}, self._stop, self._ready),
            name="memento-watcher",
            daemon=True,
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            log.warning("file watcher not ready after %.1f s, going on", START_TIMEOUT)
        log.debug("watching %d directories", len(dirs))

    def _stop_thread(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None or thread is threading.current_thread():
            return
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            log.warning("file watcher thread still running after %.1f s", STOP_TIMEOUT)

    def _run(self, names: dict[str, str], stop: _Stop, ready: threading.Event) -> None:
        try:
            for paths in self._events(names, stop, ready):
                with self._pending_lock:
                    self._pending.update(paths)
                self._announce()
        except (OSError, RuntimeError):
            if not stop.is_set():
                self._failed = True
                log.exception("file watcher failed, comparing file stamps at every check")
        finally:
            ready.set()
            if isinstance(stop, _inotify.Stop):
                stop.close()

    def _events(
        self, names: dict[str, str], stop: _Stop, ready: threading.Event
    ) -> Iterator[set[str]]:
        """Sets of changed paths that count, under the names they are tracked by."""
        if isinstance(stop, _inotify.Stop):
            given = {name: name for name in names.values()}
            counts = self._counts
            yield from _inotify.watch(given, stop, ready, counts)
            return
        for changes in watchfiles.watch(
            *names,
            watch_filter=lambda _change, path: self._counts(_given(names, path)),
            step=_STEP_MS,
            debounce=round(SETTLE_LIMIT * 1000),
            stop_event=_StopSignal(stop, ready),
            rust_timeout=_RUST_TIMEOUT_MS,
            yield_on_timeout=True,
            raise_interrupt=False,
            recursive=False,
        ):
            if changes:
                yield {_given(names, path) for _, path in changes}

    def _counts(self, path: str) -> bool:
        return self._layout.counts(path, self.matcher)

    def _announce(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:
            log.exception("%r: on_change failed", self)

    def _after_fork(self) -> None:
        # a lock another thread held at the fork would stay held in the child
        self._lock = threading.Lock()
        self._pending_lock = threading.Lock()


def _given(names: dict[str, str], path: str) -> str:
    """Map an event path back under the directory name it was watched by."""
    if path in names:
        return names[path]
    head, tail = os.path.split(path)
    given = names.get(head)
    return path if given is None else os.path.join(given, tail)


_Stop = Union[threading.Event, _inotify.Stop]

_trackers: weakref.WeakSet[WatchfilesTracker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tracker in list(_trackers):
        tracker._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
