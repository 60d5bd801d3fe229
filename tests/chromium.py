"""Headless Chromium driven over the DevTools protocol, for the browser tests.

Debian's ``chromium`` (or ``chromium-browser``, ``google-chrome``) is started
with ``--remote-debugging-port=0``; the port it picked is read from the
``DevToolsActivePort`` file in its profile, and one page is driven through
its websocket (the ``websocket-client`` package). Every wait is bounded;
:meth:`Browser.close` kills the browser's whole process group.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
#: Also for a page that is driven: its timers and frames run at full speed.
DRIVEN_FLAGS = (
    "--disable-extensions",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
)


def find_browser() -> str | None:
    """The path of a Chromium-like browser, or ``None``."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_browser() -> str:
    """The browser's path; skips the test without one, but fails it in CI (``CI=true``)."""
    import pytest

    path = find_browser()
    if path is not None:
        return path
    message = f"no browser found, tried {', '.join(BROWSERS)} (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, path: str, profile: Path, *, timeout: float = 30.0) -> None:
        import websocket

        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile / "chromium.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    path,
                    *FLAGS,
                    *DRIVEN_FLAGS,
                    f"--user-data-dir={profile}",
                    "--remote-debugging-port=0",
                    "--window-size=1000,700",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._ids = itertools.count(1)
        try:
            port = self._port(profile / "DevToolsActivePort", timeout)
            target = self._page(port, timeout)
            self.ws = websocket.create_connection(
                target, timeout=timeout, suppress_origin=True
            )
        except BaseException:
            self.close()
            raise

    def _port(self, path: Path, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"browser exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return int(path.read_text().split()[0])
            except (OSError, IndexError, ValueError):
                time.sleep(0.05)
        raise TimeoutError(f"no DevTools port after {timeout} s:\n{self.output()}")

    def _page(self, port: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            url = f"http://127.0.0.1:{port}/json/list"
            with urllib.request.urlopen(url, timeout=timeout) as response:
                targets = json.load(response)
            for target in targets:
                if target.get("type") == "page" and "webSocketDebuggerUrl" in target:
                    return str(target["webSocketDebuggerUrl"])
            time.sleep(0.05)
        raise TimeoutError(f"no page target after {timeout} s")

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run one DevTools command and return its result; events are dropped."""
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page, ``None`` while it navigates."""
        try:
            result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        except RuntimeError:
            return None
        return result.get("result", {}).get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def time_frames(self) -> None:
        """From the next page on, note when the first frame after its DOM is ready is
        drawn (:meth:`drawn_at`): headless Chromium has no paint timing entries."""
        self.send("Page.enable")  # without it, the script is never run
        self.send(
            "Page.addScriptToEvaluateOnNewDocument",
            source="document.addEventListener('DOMContentLoaded', function () {"
            " requestAnimationFrame(function () {"
            " window.__mementoDrawn = performance.timeOrigin + performance.now(); }); });",
        )

    def drawn_at(self) -> float | None:
        """When the page drew its first frame, in seconds since the epoch
        (see :meth:`time_frames`)."""
        value = self.evaluate("window.__mementoDrawn || null")
        return None if value is None else float(value) / 1000

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
