"""A named daemon thread that runs one task each time it is woken.

The middleware's ``memento-reloader``: the watcher wakes it when a burst of
changes settled, and it reloads before the next request comes.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

log = logging.getLogger("memento")

#: Longest :meth:`Worker.stop` waits for a task under way, in seconds.
STOP_TIMEOUT = 15.0


class Worker:
    """Run ``task()`` in a thread named ``name`` after each :meth:`wake`.

    Wakes that come while the task runs make it run once more, not once per
    wake. The thread starts on the first wake after construction or
    :meth:`stop` (in a forked child too); :meth:`stop` ends it. A task that
    raises is logged and the thread goes on.
    """

    def __init__(self, task: Callable[[], object], name: str) -> None:
        self._task = task
        self.name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"Worker({self.name!r})"

    @property
    def alive(self) -> bool:
        """Whether the thread runs in this process."""
        thread = self._thread
        return thread is not None and thread.is_alive() and self._pid == os.getpid()

    def wake(self) -> None:
        """Have the task run soon in the worker thread; returns at once."""
        if self._pid != os.getpid():
            # the thread stayed in the parent; a lock held at the fork stays held
            self._lock, self._thread, self._pid = threading.Lock(), None, os.getpid()
        with self._lock:
            if not self.alive:
                self._start()
            self._wake.set()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the thread, waiting at most ``timeout`` seconds for a task under way."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            self._wake.set()
        if thread is None or thread is threading.current_thread() or self._pid != os.getpid():
            return
        thread.join(timeout)
        if thread.is_alive():
            log.warning("thread %s still running after %.1f s", self.name, timeout)

    def _start(self) -> None:
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._wake, self._stop), name=self.name, daemon=True
        )
        self._thread.start()

    def _run(self, wake: threading.Event, stop: threading.Event) -> None:
        while True:
            wake.wait()
            if stop.is_set():
                return
            wake.clear()
            try:
                self._task()
            except BaseException:  # the thread serves the whole process: it goes on
                log.exception("%s: %r failed", self.name, self._task)
