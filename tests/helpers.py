"""Helpers shared by the tests: bounded waits, edits, the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

#: One WSGI module answering the text given for ``%s``.
APP = '''\
def app(environ, start_response):
    body = %r.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, what: str = "") -> T:
    """Poll ``predicate`` until it returns something true; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate!r}")
        time.sleep(0.01)


def edit(path: Path, source: str) -> None:
    """Rewrite a file the way an editor saves it, making sure its stamp changes."""
    before = path.stat() if path.exists() else None
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    after = path.stat()
    if before is not None and (before.st_mtime_ns, before.st_size) == (
        after.st_mtime_ns,
        after.st_size,
    ):
        os.utime(path, ns=(after.st_atime_ns, after.st_mtime_ns + 1000))


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a subprocess: bytecode writing on, as users have it."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_python(
    code: str, cwd: Path, *, timeout: float = 60, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with bytecode writing on; show output on failure."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def run_cli(
    args: Sequence[str], cwd: Path, *, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m memento`` to completion (for the exits that come at once)."""
    return subprocess.run(
        [sys.executable, "-m", "memento", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fetch(url: str, timeout: float = 5) -> str:
    """GET a URL on 127.0.0.1 and return the body as text."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def write_package(root: Path, name: str, files: Mapping[str, str]) -> Path:
    """Write a package's files (sources dedented) under ``root``; returns its folder."""
    import importlib

    for relpath, source in files.items():
        path = root / name / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    importlib.invalidate_caches()
    return root / name


def write_shop_project(root: Path) -> Path:
    """A project folder holding a ``shop`` package whose app answers ``v1``."""
    write_package(root, "shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    return root
