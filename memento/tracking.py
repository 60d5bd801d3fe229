"""Which tracked files changed: file stamps, the ``Tracker`` protocol, the poller.

A file has changed when its modification time (in nanoseconds), its size or
its inode differ from the last look, or when it is gone. ``watch`` entries are
files, directories (every non-excluded file below them) or glob patterns.
"""

from __future__ import annotations

import fnmatch
import glob
import importlib.util
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Callable, NamedTuple, Protocol

__all__ = [
    "SETTLE_LIMIT",
    "Matcher",
    "PollingTracker",
    "Stamp",
    "Tracker",
    "expand",
    "make_tracker",
]

log = logging.getLogger("memento")

#: Longest a burst of writes is waited out before its changes are reported.
SETTLE_LIMIT = 2.0

#: How far a file's modification time may lag the clock, in nanoseconds.
CLOCK_SLACK_NS = 20_000_000

#: The quiet time that ends a burst of writes, in seconds.
SETTLE = 0.05

_MAGIC = re.compile(r"[*?[]")


class Stamp(NamedTuple):
    """What a file looks like on disk; any field differing means it changed."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: str) -> Stamp | None:
        """Stamp ``path`` now; ``None`` when it is missing or not a regular file."""
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


class Matcher:
    """Include/exclude rules shared by the watcher and the poller.

    ``excludes`` are :mod:`fnmatch` patterns matched against each part of a
    path: editor backups and swap files, bytecode, version control
    directories, logs and databases are left out by default.
    """

    DEFAULT_EXCLUDES: tuple[str, ...] = (
        "*~",
        ".#*",
        "*.swp",
        "*.swo",
        "*.swx",
        "4913",  # vim probes whether a directory is writable with this name
        "*.tmp",
        "__pycache__",
        "*.pyc",
        "*.pyo",
        ".git",
        ".hg",
        ".svn",
        "*.log",
        "*.sqlite",
        "*.sqlite3",
        "*.db",
        "*.db-journal",
        "*.sqlite-journal",
        "*-wal",
        "*-shm",
        ".DS_Store",
    )

    def __init__(self, excludes: Iterable[str] = DEFAULT_EXCLUDES) -> None:
        self.excludes = tuple(excludes)
        joined = "|".join(fnmatch.translate(os.path.normcase(p)) for p in self.excludes)
        self._match = re.compile(joined).match if self.excludes else None

    def __repr__(self) -> str:
        return f"Matcher({self.excludes!r})"

    def excluded(self, path: str) -> bool:
        """Tell whether the file name or any directory part of ``path`` is excluded."""
        if self._match is None:
            return False
        parts = os.path.normcase(path).split(os.sep)
        return any(self._match(part) for part in parts if part)


class Tracker(Protocol):
    """Tells which tracked files changed; the middleware's view of a backend."""

    @property
    def files(self) -> frozenset[str]:
        """The exact files given to the last :meth:`track` call."""
        ...

    def track(
        self,
        files: Iterable[str],
        watch: Iterable[str] = (),
        *,
        since_ns: int | None = None,
    ) -> None:
        """Replace everything tracked by ``files`` and ``watch``, stamped now.

        ``files`` are tracked even if excluded, and even if missing (their
        appearance is a change). ``watch`` holds files, directories and glob
        patterns. Pending changes are dropped, but a file tracked before whose
        stamp differs from the one last looked at is reported by the next
        :meth:`changed`, and so is a newly tracked file whose mtime lies
        between ``since_ns`` (a :func:`time.time_ns` value) and now: either may
        have been edited while it was imported.
        """
        ...

    def add(self, files: Iterable[str], *, since_ns: int | None = None) -> None:
        """Track more exact files, stamped now; the rest and pending changes stay.

        ``files`` hold modules imported after ``since_ns`` (lazy imports): one
        already gone, or modified since ``since_ns``, is reported by the next
        :meth:`changed`.
        """
        ...

    def due(self) -> bool:
        """Whether :meth:`changed` may have something to report now.

        Cheap and lock-free: ``False`` lets a request skip the look.
        """
        ...

    def changed(self) -> set[str]:
        """Return and consume the paths changed since the last look."""
        ...

    def close(self) -> None:
        """Stop any thread; calling it again does nothing."""
        ...


def expand(watch: Iterable[str], matcher: Matcher) -> set[str]:
    """Return the files that ``watch`` entries cover now.

    A directory covers every non-excluded file below it, a glob pattern its
    non-excluded matches (``**`` spans directories), a plain path itself,
    whether it exists or not.
    """
    plain, trees, patterns = _split_watch(watch)
    found = set(plain)
    for root in trees:
        for dirpath, names in _walk(root, matcher):
            found.update(os.path.join(dirpath, name) for name in names)
    for pattern in patterns:
        found.update(_glob_files(pattern, matcher))
    return found


def _split_watch(watch: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
    """Sort absolute ``watch`` entries into plain paths, directories and patterns."""
    plain: list[str] = []
    trees: list[str] = []
    patterns: list[str] = []
    for entry in watch:
        path = os.path.abspath(os.fspath(entry))
        if os.path.isdir(path):
            trees.append(path)
        elif _MAGIC.search(path) and not os.path.exists(path):
            patterns.append(path)
        else:
            plain.append(path)
    return plain, trees, patterns


def _walk(root: str, matcher: Matcher) -> Iterator[tuple[str, list[str]]]:
    """Yield each directory below ``root`` with its file names, excludes left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [name for name in dirnames if not matcher.excluded(name)]
        yield dirpath, [name for name in filenames if not matcher.excluded(name)]


def _glob_base(pattern: str) -> str:
    """Return the directory a glob pattern starts from: its part before any wildcard."""
    base = os.path.dirname(pattern)
    while _MAGIC.search(base):
        base = os.path.dirname(base)
    return base


def _glob_files(pattern: str, matcher: Matcher) -> set[str]:
    """Return the regular files matching ``pattern``, excludes left out."""
    base = _glob_base(pattern)
    return {
        os.path.normpath(path)
        for path in glob.glob(pattern, recursive=True)
        if not matcher.excluded(os.path.relpath(path, base)) and os.path.isfile(path)
    }


def _glob_dirs(pattern: str, matcher: Matcher) -> set[str]:
    """Return the directories where matches of ``pattern`` (or parents) may appear."""
    base = _glob_base(pattern)
    found = {base}
    prefix = os.path.dirname(pattern)
    while prefix != base:
        found.update(
            os.path.normpath(path)
            for path in glob.glob(prefix, recursive=True)
            if not matcher.excluded(os.path.relpath(path, base)) and os.path.isdir(path)
        )
        prefix = os.path.dirname(prefix)
    return found


def _absolute(files: Iterable[str]) -> frozenset[str]:
    return frozenset(os.path.abspath(os.fspath(path)) for path in files)


def _differences(old: dict[str, Stamp | None], new: dict[str, Stamp | None]) -> set[str]:
    """Return the paths whose stamps differ; an absent path counts as missing."""
    return {path for path in old.keys() | new.keys() if old.get(path) != new.get(path)}


def _edited_since(stamps: dict[str, Stamp | None], since_ns: int | None) -> set[str]:
    """Return the paths modified between ``since_ns`` and now (never in the future).

    File systems stamp files with the kernel's coarse clock, which may run
    up to :data:`CLOCK_SLACK_NS` behind ``time.time_ns()``: "now" allows for
    that.
    """
    if since_ns is None:
        return set()
    now = time.time_ns() + CLOCK_SLACK_NS
    return {
        path
        for path, found in stamps.items()
        if found is not None and since_ns <= found.mtime_ns <= now
    }


class _StampTracker:
    """What both trackers share: the tracked entries, their stamps, the locking.

    Subclasses provide ``_retarget()`` and ``_added()`` (called under the lock
    by :meth:`track` and :meth:`add` before stamps are taken) and ``_detect()``
    (called under the lock by :meth:`changed`).
    """

    def __init__(self, matcher: Matcher | None) -> None:
        self.matcher = matcher if matcher is not None else Matcher()
        self._lock = threading.Lock()
        self._files: frozenset[str] = frozenset()
        self._watch: tuple[str, ...] = ()
        self._stamps: dict[str, Stamp | None] = {}
        self._recent: set[str] = set()

    @property
    def files(self) -> frozenset[str]:
        """The exact files given to the last :meth:`track` call, as absolute paths."""
        return self._files

    def track(
        self,
        files: Iterable[str],
        watch: Iterable[str] = (),
        *,
        since_ns: int | None = None,
    ) -> None:
        """Replace everything tracked; see :meth:`Tracker.track`."""
        exact = _absolute(files)
        entries = tuple(os.path.abspath(os.fspath(entry)) for entry in watch)
        with self._lock:
            self._files, self._watch = exact, entries
            self._retarget()
            seen, self._stamps = self._stamps, self._scan()
            # A file tracked before changed if its stamp did since it was
            # last looked at; a file new here, if it was edited since_ns.
            new = {path: stamp for path, stamp in self._stamps.items() if path not in seen}
            self._recent = _edited_since(new, since_ns) | {
                path
                for path, stamp in self._stamps.items()
                if path in seen and seen[path] != stamp
            }
        log.debug("tracking %d files (%d watch entries)", len(self._stamps), len(entries))

    def add(self, files: Iterable[str], *, since_ns: int | None = None) -> None:
        """Track more exact files; see :meth:`Tracker.add`."""
        with self._lock:
            new = _absolute(files) - self._files
            if not new:
                return
            self._files |= new
            self._added(new)
            # a file a watch entry covers keeps its stamp: its change stays due
            stamps = {path: Stamp.of(path) for path in new - self._stamps.keys()}
            self._stamps.update(stamps)
            self._recent |= {path for path, stamp in stamps.items() if stamp is None}
            self._recent |= _edited_since(stamps, since_ns)
        log.debug("tracking %d more files", len(new))

    def _added(self, files: frozenset[str]) -> None:
        """Follow newly added files; the lock is held."""

    def due(self) -> bool:
        """Whether :meth:`changed` may have something to report now."""
        return bool(self._recent) or self._due()

    def _due(self) -> bool:
        return True

    def changed(self) -> set[str]:
        """Return and consume the paths changed since the last look.

        A call made while another thread is already looking returns an empty
        set at once: that thread reports what changed.
        """
        if not self._lock.acquire(blocking=False):
            return set()
        try:
            found = self._detect()
            if self._recent:
                found |= self._recent
                self._recent = set()
            return found
        finally:
            self._lock.release()

    def close(self) -> None:
        """Nothing to stop here; see subclasses."""

    def _retarget(self) -> None:
        """Prepare for new tracked entries; the lock is held."""

    def _detect(self) -> set[str]:
        raise NotImplementedError

    def _scan(self) -> dict[str, Stamp | None]:
        paths = set(self._files)
        paths.update(expand(self._watch, self.matcher))
        return {path: Stamp.of(path) for path in paths}

    def _compare_all(self) -> set[str]:
        current = self._scan()
        found = _differences(self._stamps, current)
        self._stamps = current
        return found


class PollingTracker(_StampTracker):
    """Find changes by comparing file stamps, at most once per ``interval`` seconds.

    ``interval`` 0 looks on every :meth:`changed` call. When a look finds
    several changes, or a second look at once finds more, the tracker waits
    ``settle`` seconds and looks again while new changes keep coming (at
    most :data:`SETTLE_LIMIT` seconds in all), so a burst of writes is
    reported as one set; a lone save is reported at once.
    """

    def __init__(
        self, interval: float, *, settle: float = SETTLE, matcher: Matcher | None = None
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval: expected seconds >= 0, got {interval!r}")
        if settle < 0:
            raise ValueError(f"settle: expected seconds >= 0, got {settle!r}")
        super().__init__(matcher)
        self.interval = interval
        self.settle = settle
        self._scanned = time.monotonic()

    def __repr__(self) -> str:
        return f"PollingTracker({self.interval!r}, settle={self.settle!r})"

    def _retarget(self) -> None:
        self._scanned = time.monotonic()

    def _due(self) -> bool:
        return not self.interval or time.monotonic() - self._scanned >= self.interval

    def _detect(self) -> set[str]:
        if self.interval and time.monotonic() - self._scanned < self.interval:
            return set()
        current = self._scan()
        found = _differences(self._stamps, current)
        if len(found) == 1:
            # One file: a save, or the first write of a burst. A second look
            # shortly after tells them apart without making a save wait long.
            time.sleep(self.settle / 5)
            latest = self._scan()
            if latest != current:
                current = self._wait_for_quiet(latest)
        elif found:
            current = self._wait_for_quiet(current)
        found = _differences(self._stamps, current)
        self._stamps = current
        self._scanned = time.monotonic()
        return found

    def _wait_for_quiet(self, current: dict[str, Stamp | None]) -> dict[str, Stamp | None]:
        """Look again every ``settle`` seconds until nothing more changes."""
        deadline = time.monotonic() + SETTLE_LIMIT
        while self.settle and time.monotonic() + self.settle <= deadline:
            time.sleep(self.settle)
            latest = self._scan()
            if latest == current:
                break
            current = latest
        return current


def make_tracker(
    interval: float,
    *,
    events: bool | None = None,
    settle: float = SETTLE,
    on_change: Callable[[], object] | None = None,
) -> Tracker:
    """Return the tracker to use: file-system events when available, else polling.

    ``events`` ``None`` uses :mod:`watchfiles` when it is installed, ``True``
    requires it (:exc:`ImportError` otherwise), ``False`` polls every
    ``interval`` seconds. ``on_change()``: called by the watcher thread when
    events came for tracked paths (so :meth:`Tracker.changed` has something
    to report); the poller never calls it, it looks when asked.
    """
    if events is None:
        events = importlib.util.find_spec("watchfiles") is not None
    if events:
        from ._watchfiles import WatchfilesTracker

        return WatchfilesTracker(settle=settle, on_change=on_change)
    return PollingTracker(interval, settle=settle)
