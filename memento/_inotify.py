"""Linux's inotify, read directly: the watcher's event source where it exists.

The thread blocks in ``poll()`` on the inotify descriptor and a stop pipe:
nothing runs while nothing changes, and an event is seen the moment the
kernel queues it. watchfiles instead wakes every step (20 ms) to look for
events, which costs CPU while idle and makes a save wait for the step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping

__all__ = ["Stop", "available", "watch"]

_MODIFY = 0x2
_CLOSE_WRITE = 0x8
_SELF_GONE = 0x400 | 0x800  # IN_DELETE_SELF, IN_MOVE_SELF
_OVERFLOW = 0x4000
_MASK = (
    _MODIFY
    | 0x4  # IN_ATTRIB: touch, chmod
    | _CLOSE_WRITE
    | 0x40  # IN_MOVED_FROM
    | 0x80  # IN_MOVED_TO
    | 0x100  # IN_CREATE
    | 0x200  # IN_DELETE
    | _SELF_GONE
    | 0x01000000  # IN_ONLYDIR
    | 0x04000000  # IN_EXCL_UNLINK: no events for names already unlinked
)
_NONBLOCK_CLOEXEC = os.O_NONBLOCK | os.O_CLOEXEC
_HEADER = struct.Struct("iIII")

#: A save's writes come within microseconds of each other: once an event
#: came, more are gathered until none came for this long (seconds).
QUIET = 0.002
#: Longest one set gathers events, in seconds: a longer burst is handed
#: over in parts, so that whoever waits for it to settle sees it go on.
BATCH = 0.01
#: Longest a file modified and not yet closed is waited for (seconds).
WRITE_LIMIT = 0.02
#: One path changed: a save, or the first write of a burst (a checkout, a
#: formatter). Another look until this long after the first event tells
#: them apart (seconds).
LOOK_AGAIN = 0.005


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "inotify_init1") else None


_LIBC = _libc()


def available() -> bool:
    """Whether inotify can be used here."""
    return _LIBC is not None


class Stop:
    """Tells a :func:`watch` loop to end, waking it at once (a pipe it polls)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._read, self._write = os.pipe()
        self._pid = os.getpid()
        self._closed = False

    def set(self) -> None:
        self._event.set()
        with self._lock:
            # a forked child must not wake its parent's thread through the shared pipe
            if not self._closed and self._pid == os.getpid():
                os.write(self._write, b"x")

    def is_set(self) -> bool:
        return self._event.is_set()

    def fileno(self) -> int:
        return self._read

    def close(self) -> None:
        with self._lock:
            if not self._closed and self._pid == os.getpid():
                os.close(self._read)
                os.close(self._write)
            self._closed = True


def watch(
    dirs: Mapping[str, str],
    stop: Stop,
    ready: threading.Event,
    counts: Callable[[str], bool],
) -> Iterator[set[str]]:
    """Yield the paths that changed in ``dirs`` (not below them), one set per save or burst.

    ``dirs`` maps each directory to watch to the name paths are reported
    under; only paths ``counts`` accepts are yielded. A directory deleted
    or moved away is reported as itself; a lost queue, as every directory.
    ``ready`` is set once the watches are in place. ``OSError`` when a
    directory cannot be watched (``ENOSPC``: too many watches).
    """
    assert _LIBC is not None
    fd = _LIBC.inotify_init1(_NONBLOCK_CLOEXEC)
    if fd < 0:
        _raise()
    try:
        names = {_add(fd, path): given for path, given in dirs.items()}
        ready.set()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(stop.fileno(), select.POLLIN)
        while not stop.is_set():
            poller.poll()
            if stop.is_set():
                return
            first = time.monotonic()
            paths = {path for path in _gather(fd, poller, names, stop) if counts(path)}
            again = LOOK_AGAIN - (time.monotonic() - first)
            if len(paths) == 1 and again > 0 and poller.poll(again * 1000):
                paths.update(p for p in _gather(fd, poller, names, stop) if counts(p))
            if paths:
                yield paths
    finally:
        os.close(fd)


def _add(fd: int, path: str) -> int:
    assert _LIBC is not None
    wd = _LIBC.inotify_add_watch(fd, os.fsencode(path), _MASK)
    if wd < 0:
        _raise(path)
    return int(wd)


def _raise(path: str | None = None) -> None:
    code = ctypes.get_errno()
    raise OSError(code, f"inotify: {os.strerror(code)}", path)


def _gather(fd: int, poller: select.poll, names: Mapping[int, str], stop: Stop) -> set[str]:
    """Read events until none came for :data:`QUIET` seconds and every file
    modified was closed (at most :data:`WRITE_LIMIT` for that, :data:`BATCH`
    while events keep coming)."""
    paths: set[str] = set()
    writing: set[str] = set()
    started = time.monotonic()
    while True:
        _read(fd, names, paths, writing)
        elapsed = time.monotonic() - started
        if stop.is_set() or elapsed >= (WRITE_LIMIT if writing else BATCH):
            return paths
        wait = WRITE_LIMIT - elapsed if writing else QUIET
        if not any(found == fd for found, _ in poller.poll(wait * 1000)):
            return paths


def _read(fd: int, names: Mapping[int, str], paths: set[str], writing: set[str]) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        offset = 0
        while offset < len(data):
            wd, mask, _cookie, size = _HEADER.unpack_from(data, offset)
            offset += _HEADER.size
            raw = data[offset : offset + size].rstrip(b"\0")
            offset += size
            if mask & _OVERFLOW:
                paths.update(names.values())
                continue
            folder = names.get(wd)
            if folder is None:
                continue
            path = os.path.join(folder, os.fsdecode(raw)) if raw else folder
            paths.add(path)
            if mask & _MODIFY:
                writing.add(path)
            elif mask & _CLOSE_WRITE:
                writing.discard(path)
