"""Requests in flight against one exclusive reload.

Invariants: no request runs while a reload does, and a reload starts only
once the responses open in other threads are closed (or the drain time ran
out). A request counts from the application call until its response
iterable is closed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("memento")


class RequestGate:
    """A readers/writer gate that prefers the writer: a reload waits for open
    responses, and holds new requests until it is done."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._open = 0
        self._reloading = False
        self._idle_waiters = 0
        self._by_thread: dict[int, int] = {}

    @property
    def reloading(self) -> bool:
        """Whether a reload holds the gate now."""
        return self._reloading

    @property
    def open_responses(self) -> int:
        """Responses entered and not yet closed, in all threads."""
        return self._open

    def enter(self) -> int:
        """Count a request in, waiting while a reload runs; returns the token
        to :meth:`leave` with."""
        token = threading.get_ident()
        with self._cond:
            while self._reloading:
                self._cond.wait()
            self._open += 1
            self._by_thread[token] = self._by_thread.get(token, 0) + 1
        return token

    def leave(self, token: int) -> None:
        """Count a request out, once its response is closed (in any thread)."""
        with self._cond:
            self._open -= 1
            left = self._by_thread.pop(token) - 1
            if left:
                self._by_thread[token] = left
            if self._reloading or (self._idle_waiters and not self._open):
                self._cond.notify_all()

    @contextmanager
    def exclusive(self, drain_timeout: float, *, idle: bool = False) -> Iterator[bool]:
        """Run the body with no request in flight in any other thread; yields
        whether it holds the gate.

        Responses this thread left open are not waited for (test clients
        never close theirs); others are waited for at most ``drain_timeout``
        seconds, after which the reload proceeds and says so.

        ``idle`` (a reload no request asked for): new requests go on while
        open responses are waited for, the gate is taken only once none is
        open, and the body runs without it (``False``) when that did not
        happen within ``drain_timeout``.
        """
        with self._cond:
            if idle:
                claimed = self._wait_idle(drain_timeout)
            else:
                while self._reloading:
                    self._cond.wait()
                claimed = self._reloading = True
                try:
                    self._drain(drain_timeout)
                except BaseException:
                    self._release()
                    raise
        try:
            yield claimed
        finally:
            if claimed:
                with self._cond:
                    self._release()

    def _wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._idle_waiters += 1
        try:
            while self._reloading or self._open:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        finally:
            self._idle_waiters -= 1
        self._reloading = True
        return True

    def _drain(self, timeout: float) -> None:
        own = self._by_thread.get(threading.get_ident(), 0)
        deadline = time.monotonic() + timeout
        while self._open > own:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "reloading with %d responses still open after %.1f s",
                    self._open - own,
                    timeout,
                )
                return
            self._cond.wait(remaining)

    def _release(self) -> None:
        self._reloading = False
        self._cond.notify_all()
