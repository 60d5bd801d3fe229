"""Live refresh (option ``live``): HTML pages reload themselves when the code changes.

Each HTML page answered to a client that live refresh is for gets a small
script before its last ``</body>`` (at its end, when it has none and the
browser asked for a page to show: ``Sec-Fetch-Dest: document``). The
script asks the endpoint :data:`PATH` whether the code that made the page
still serves: the answer comes as soon as a reload ends (a new generation,
a failed reload, a template refresh, a restart), and the page reloads
itself; when only stylesheets changed, it swaps them in place.

Invariants: the endpoint is answered outside the request gate (a reload
never waits for it); a poll is held at most :data:`HOLD` seconds, and at most
:data:`MAX_HELD` at once (more are answered at once and ask again after
:data:`RETRY` seconds), so that open tabs never take all of a server's
threads.

What is injected into, exactly: a ``GET`` answered with a status other than
1xx, 204, 206 and 304, ``Content-Type: text/html``, no ``Content-Encoding``
(or ``identity``), a body whose length is known (a ``Content-Length`` of at
most :data:`MAX_BODY` bytes, or a list), holding ``</body>`` or asked for
as a document, and made without the ``write()`` callable. The
``Content-Length`` is set to the new length and ``Cache-Control`` to
``no-store`` (a page kept in a cache would carry an old generation's token
and reload for ever). Anything else (streamed bodies of unknown length,
``wsgi.file_wrapper`` responses, ``HEAD``, other types) passes as it is,
unbuffered.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from html import escape
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import parse_qs

from ._compat import resources_files
from .errorpage import is_loopback

if TYPE_CHECKING:
    from .base import ReloadInfo, ReloadingMiddleware

log = logging.getLogger("memento")

#: The endpoint the injected script polls, below the application's ``SCRIPT_NAME``.
PATH = "/__memento__/live"
#: Longest a poll is held open waiting for a change, in seconds.
HOLD = 20.0
#: Polls held open at once; more are answered at once (tabs beyond it poll every RETRY).
MAX_HELD = 3
#: How often a held poll looks for a change, in seconds.
LOOK_EVERY = 0.01
#: When a poll is not held (too many, or the server stops): ask again after this, in seconds.
RETRY = 1.0
#: Largest body with a Content-Length that is read whole to be injected into, in bytes.
MAX_BODY = 8 * 1024 * 1024

_NO_BODY = ("1", "204", "206", "304")
_HISTORY = 32

StartResponse = Callable[..., Any]
ExcInfo = Optional[tuple[type[BaseException], BaseException, TracebackType]]
Held = tuple[str, list[tuple[str, str]], ExcInfo]

_instances: weakref.WeakSet[Live] = weakref.WeakSet()


def release_all() -> None:
    """Answer every held poll of this process at once: the server is stopping.

    The pages ask again shortly, and reload when a new process answers.
    """
    for live in list(_instances):
        live.release()


@functools.cache
def script() -> str:
    """The injected script's source (package data ``templates/live.js``)."""
    resource = resources_files(__package__ or "memento") / "templates" / "live.js"
    return resource.read_text(encoding="utf-8")


def snippet(url: str, token: str) -> bytes:
    """The ``<script>`` element injected into a page served at ``token``."""
    return (
        f'<script data-memento-live="{escape(url)}" data-memento-token="{escape(token)}">\n'
        f"{script()}</script>\n"
    ).encode()


def inject(body: bytes, element: bytes, *, document: bool = False) -> bytes | None:
    """``body`` with ``element`` before its last ``</body>``, or at its end when it
    has none and ``document`` (the browser shows it as a page); else ``None``."""
    at = body.lower().rfind(b"</body>")
    if at < 0:
        return body + element if document else None
    return body[:at] + element + body[at:]


def is_document(environ: dict) -> bool:
    """Whether the browser asked for a page it shows (``Sec-Fetch-Dest``), not a fragment."""
    return environ.get("HTTP_SEC_FETCH_DEST", "").strip().lower() in ("document", "iframe")


def injectable(status: str, headers: Iterable[tuple[str, str]]) -> bool:
    """Whether a response with this status and headers may get the script."""
    if status.startswith(_NO_BODY):
        return False
    fields = {name.lower(): value for name, value in headers}
    content_type = fields.get("content-type", "").split(";")[0].strip().lower()
    encoding = fields.get("content-encoding", "identity").strip().lower()
    return content_type == "text/html" and encoding in ("", "identity")


def content_length(headers: Iterable[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


def fix_headers(headers: list[tuple[str, str]], length: int) -> list[tuple[str, str]]:
    """Set Content-Length (when the application gave one) and Cache-Control."""
    fixed = []
    for name, value in headers:
        if name.lower() == "content-length":
            value = str(length)
        elif name.lower() == "cache-control":
            continue
        fixed.append((name, value))
    fixed.append(("Cache-Control", "no-store"))
    return fixed


class Live:
    """Live refresh for one middleware: the injection and the endpoint.

    ``clients``: ``True`` for loopback clients, ``"all"`` for every client.
    ``look``: checks for changes and reloads when one is due (what a request
    does first); a held poll calls it every :data:`LOOK_EVERY` seconds, so
    that the page hears of an edit without waiting for a request.
    """

    def __init__(
        self, middleware: ReloadingMiddleware, look: Callable[[], object], clients: bool | str
    ) -> None:
        self._middleware = middleware
        self._look = look
        self._clients = clients
        self._id = os.urandom(4).hex()  # a restarted process never reuses a token
        self._cond = threading.Condition()
        self._held = 0
        self._released = False
        self._styles: deque[tuple[str, str]] = deque(maxlen=_HISTORY)
        self._last_failed = False
        middleware.after_reload(self._reloaded)
        _instances.add(self)

    # -- WSGI ----------------------------------------------------------------

    def __call__(
        self,
        environ: dict,
        start_response: StartResponse,
        respond: Callable[[dict, StartResponse], Iterable[bytes]],
    ) -> Iterable[bytes]:
        """Answer the endpoint, or serve the request by ``respond`` with the script added."""
        if not self.serves(environ):
            return respond(environ, start_response)
        if environ.get("PATH_INFO") == PATH:
            return self._endpoint(environ, start_response)
        if environ.get("REQUEST_METHOD") != "GET":
            return respond(environ, start_response)
        page = Page(start_response)
        result = respond(environ, page.start_response)
        url = environ.get("SCRIPT_NAME", "") + PATH
        return page.finish(result, environ, lambda: snippet(url, self.token()))

    def serves(self, environ: dict) -> bool:
        """Whether live refresh is for this request's client."""
        return self._clients == "all" or is_loopback(environ)

    def token(self) -> str:
        """What identifies the code serving now: this process, its generation, its failures."""
        stats = self._middleware.stats
        return f"{self._id}.{stats.generation}.{stats.failures}"

    def release(self) -> None:
        """Answer every held poll now, and hold none from now on."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    # -- the endpoint --------------------------------------------------------

    def _endpoint(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        since = query.get("token", [""])[0]
        body = json.dumps(self.wait(since)).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    def wait(self, since: str, hold: float | None = None) -> dict[str, Any]:
        """Wait at most ``hold`` seconds (default :data:`HOLD`) for the code
        serving to differ from ``since``.

        Returns the answer for the page: ``action`` ``"reload"``, ``"css"``
        (only stylesheets changed) or ``"none"``, the ``token`` now, and
        ``retry``, the seconds to wait before asking again.
        """
        with self._slot() as held:
            deadline = time.monotonic() + ((HOLD if hold is None else hold) if held else 0.0)
            while True:
                if not self._looked():
                    return {"action": "none", "token": since, "retry": RETRY}
                token = self.token()
                if token != since:
                    return {"action": self._action(since, token), "token": token, "retry": 0}
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._released:
                    retry = 0 if held and not self._released else RETRY
                    return {"action": "none", "token": token, "retry": retry}
                with self._cond:
                    self._cond.wait(min(LOOK_EVERY, remaining))

    @contextmanager
    def _slot(self) -> Iterator[bool]:
        """Whether this poll may be held open (fewer than MAX_HELD are)."""
        with self._cond:
            held = self._held < MAX_HELD and not self._released
            self._held += int(held)
        try:
            yield held
        finally:
            with self._cond:
                self._held -= int(held)

    def _looked(self) -> bool:
        try:
            self._look()
        except Exception:
            log.exception("live refresh: looking for changes failed")
            return False
        return True

    def _action(self, since: str, token: str) -> str:
        """``"css"`` when every reload since ``since`` changed stylesheets only."""
        at = since
        for before, after in list(self._styles):
            if before == at:
                at = after
        return "css" if at == token and at != since else "reload"

    def _reloaded(self, info: ReloadInfo) -> None:
        styles = (
            info.error is None
            and not self._last_failed
            and bool(info.changed)
            and all(path.lower().endswith(".css") for path in info.changed)
        )
        self._last_failed = info.error is not None
        if styles:
            failures = self._middleware.stats.failures
            before = f"{self._id}.{info.generation - 1}.{failures}"
            self._styles.append((before, self.token()))
        with self._cond:
            self._cond.notify_all()


class Page:
    """One response on its way to the client, the script added when it can be.

    ``start_response`` is held back while the response may be injected into,
    until the body is known; everything else goes straight through.
    """

    def __init__(self, start_response: StartResponse) -> None:
        self._start_response = start_response
        self._held: Held | None = None
        self._passing = False
        self._write_through: Callable[[bytes], object] | None = None

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo = None
    ) -> Callable[[bytes], object]:
        if self._held is not None and exc_info is None:
            self._release()  # called twice: the server says what it thinks of that
        if self._passing or not injectable(status, headers):
            self._passing, self._held = True, None
            return self._start(status, headers, exc_info)
        self._held = (status, list(headers), exc_info)
        return self._write

    def finish(
        self, result: Iterable[bytes], environ: dict, element: Callable[[], bytes]
    ) -> Iterable[bytes]:
        """The response to return to the server for the application's ``result``.

        ``element()`` makes the script, called while the response is open
        (before any reload can end): its token is that of the code that made it.
        """
        held = self._held
        if held is None:  # passed through, or start_response is still to come
            self._passing = True
            return result
        length = content_length(held[1])
        known = (length is not None and length <= MAX_BODY) or hasattr(result, "__len__")
        wrapper = environ.get("wsgi.file_wrapper")
        if not known or (isinstance(wrapper, type) and isinstance(result, wrapper)):
            self._release()
            return result
        try:
            body = b"".join(result)
            added = element()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers, exc_info = self._held or held
        page = None
        if injectable(status, headers):
            page = inject(body, added, document=is_document(environ))
        if page is None:
            self._release()
            return [body]
        self._passing, self._held = True, None
        self._start(status, fix_headers(headers, len(page)), exc_info)
        return [page]

    def _start(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo
    ) -> Callable[[bytes], object]:
        if exc_info is None:
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)

    def _release(self) -> Callable[[bytes], object]:
        held, self._held = self._held, None
        self._passing = True
        assert held is not None
        return self._start(*held)

    def _write(self, data: bytes) -> None:
        # The application writes its body itself: no injecting into that.
        if self._write_through is None:
            self._write_through = self._release()
        self._write_through(data)
