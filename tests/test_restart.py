"""Restarts that keep the listening socket: its pieces in process, the real CLI in a subprocess."""

from __future__ import annotations

import http.client
import importlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Callable

import pytest
from helpers import clean_env, edit, run_cli, run_python, wait_until, write_package

from memento.restart import (
    HANDOFF,
    LISTEN_FD,
    Handoff,
    RestartWatcher,
    as_restart_on,
    inherited_handoff,
    inherited_socket,
    kept_files,
    listening_socket,
    restart_modules,
)

#: A WSGI module answering "<pid> <boot> <version>": ``BOOT`` is new in each
#: process (and each in-process reload of this module), the pid stays across
#: ``execv``.
APP = '''\
import os
import uuid

BOOT = uuid.uuid4().hex


def app(environ, start_response):
    body = f"{os.getpid()} {BOOT} %s".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

#: The same, its ``BOOT`` and colour taken from ``shop.settings``.
APP_WITH_SETTINGS = '''\
import os

from shop import settings


def app(environ, start_response):
    body = f"{os.getpid()} {settings.BOOT} {settings.COLOUR} %s".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

SETTINGS = '''\
import uuid

BOOT = uuid.uuid4().hex
COLOUR = %r
'''

#: The same, its colour read from ``settings.ini`` when it starts.
APP_READING_INI = '''\
import os
import uuid
from pathlib import Path

BOOT = uuid.uuid4().hex
COLOUR = Path("settings.ini").read_text().strip()


def app(environ, start_response):
    body = f"{os.getpid()} {BOOT} {COLOUR} %s".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

#: Bound of the waits for a restart or a watcher (a loaded machine starts slowly).
RESTART_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, timeout: float = 10) -> list[str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode().split()


# -- the pieces, in process ---------------------------------------------------


def test_listening_socket_listens_with_reuse_and_is_not_inherited():
    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert not sock.get_inheritable()
        assert sock.getsockname()[0] == "127.0.0.1"


def test_inherited_socket_is_adopted_and_the_variable_removed(monkeypatch):
    with listening_socket("127.0.0.1", 0) as sock:
        monkeypatch.setenv(LISTEN_FD, str(os.dup(sock.fileno())))
        adopted = inherited_socket()
        assert adopted is not None
        with adopted, socket.create_connection(sock.getsockname(), timeout=5):
            assert LISTEN_FD not in os.environ
            assert adopted.getsockname() == sock.getsockname()
            assert not adopted.get_inheritable()
            adopted.settimeout(5)
            conn, _ = adopted.accept()
            conn.close()


def test_no_inherited_socket_without_the_variable(monkeypatch):
    monkeypatch.delenv(LISTEN_FD, raising=False)
    assert inherited_socket() is None


def test_inherited_socket_refuses_what_does_not_listen(monkeypatch):
    monkeypatch.setenv(LISTEN_FD, "nope")
    with pytest.raises(ValueError, match="MEMENTO_LISTEN_FD.*'nope'"):
        inherited_socket()
    with socket.socket() as unbound:
        monkeypatch.setenv(LISTEN_FD, str(unbound.fileno()))
        with pytest.raises(ValueError, match="not a listening TCP socket"):
            inherited_socket()
        assert unbound.fileno() >= 0  # left open: it was not ours to close


def test_restart_on_reads_paths_like_watch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    assert as_restart_on(["*.ini", "config/*.toml"]) == (
        str(tmp_path / "*.ini"),
        str(tmp_path / "config" / "*.toml"),
    )
    with pytest.raises(ValueError, match=r"--restart-on: .*'nodir/\*\.ini'"):
        as_restart_on(["nodir/*.ini"])


def test_handoff_survives_the_environment_and_tells_what_changed(tmp_path, monkeypatch):
    ini, gone = tmp_path / "app.ini", tmp_path / "gone.ini"
    ini.write_text("[app]\n")
    handoff = Handoff.take([str(ini), str(gone)])
    assert handoff.stamps[str(gone)] is None
    monkeypatch.setenv(HANDOFF, handoff.encode())
    assert inherited_handoff() == handoff
    assert HANDOFF not in os.environ
    assert inherited_handoff() is None
    assert handoff.changed() == set()
    edit(ini, "[app]\ncolour = blue\n")
    gone.write_text("")
    assert handoff.changed() == {str(ini), str(gone)}
    monkeypatch.setenv(HANDOFF, "{")
    with pytest.raises(ValueError, match="MEMENTO_HANDOFF"):
        inherited_handoff()


def test_restart_modules_are_the_python_files_patterns_cover(tmp_path):
    write_package(tmp_path, "shop", {"__init__.py": "", "settings.py": "", "views.py": ""})
    (tmp_path / "app.ini").write_text("")
    patterns = [str(tmp_path / "shop" / "*.py"), str(tmp_path / "*.ini")]
    found = restart_modules(patterns, [str(tmp_path)])
    assert found == ("shop.settings", "shop.views")
    assert restart_modules([str(tmp_path / "shop" / "settings.py")], ["/elsewhere"]) == ()


def test_kept_files_are_the_users_kept_modules(make_package):
    pkg = make_package("shop", {"__init__.py": "", "settings.py": "X = 1\n", "wsgi.py": ""})
    importlib.import_module("shop.settings")
    importlib.import_module("shop.wsgi")
    assert kept_files(["shop.settings"]) == {str(pkg / "settings.py")}
    everything = {str(pkg / name) for name in ("__init__.py", "settings.py", "wsgi.py")}
    assert kept_files(["shop"]) == everything
    assert kept_files(["json", "memento"]) == set()
    assert kept_files([]) == set()


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.mark.parametrize("events", [False, True], ids=["polling", "events"])
def test_watcher_calls_once_for_a_kept_module_imported_late(make_package, events):
    pkg = make_package("shop", {"__init__.py": "", "settings.py": "X = 1\n"})
    calls = Calls()
    with RestartWatcher(calls, kept=["shop.settings"], interval=0, events=events) as watcher:
        watcher.start()
        importlib.import_module("shop.settings")
        watcher.rescan()
        edit(pkg / "settings.py", "X = 22\n")
        wait_until(lambda: calls.count, RESTART_TIMEOUT, "the watcher to call on_change")
        edit(pkg / "settings.py", "X = 333\n")
        time.sleep(3 * watcher.interval)  # its thread has ended: no second call
    assert calls.count == 1
    assert watcher.changed == (str(pkg / "settings.py"),)


@pytest.mark.parametrize("events", [False, True], ids=["polling", "events"])
def test_watcher_sees_a_new_file_matching_a_pattern(tmp_path, events):
    calls = Calls()
    with RestartWatcher(calls, [str(tmp_path / "*.ini")], interval=0, events=events) as watcher:
        watcher.start()
        (tmp_path / "notes.txt").write_text("not watched\n")
        time.sleep(3 * watcher.interval)  # no event to wait for: nothing must happen
        assert calls.count == 0
        (tmp_path / "app.ini").write_text("[app]\n")
        wait_until(lambda: calls.count, RESTART_TIMEOUT, "the watcher to call on_change")
    assert watcher.changed == (str(tmp_path / "app.ini"),)


@pytest.mark.parametrize("edited", [False, True], ids=["untouched", "edited"])
def test_watcher_restarts_again_only_for_an_edit_made_during_the_restart(tmp_path, edited):
    ini = tmp_path / "app.ini"
    ini.write_text("[app]\n")
    handoff = Handoff.take([str(ini)])
    if edited:
        edit(ini, "[app]\ncolour = blue\n")
    calls = Calls()
    with RestartWatcher(calls, [str(ini)], interval=0, events=False) as watcher:
        watcher.start(since_ns=time.time_ns(), handoff=handoff)
        if edited:
            wait_until(lambda: calls.count, RESTART_TIMEOUT, "the watcher to call on_change")
        else:
            time.sleep(3 * watcher.interval)  # nothing to wait for: no restart must come
    assert calls.count == edited


def test_watcher_sees_an_edit_made_while_the_application_loaded(tmp_path):
    ini = tmp_path / "app.ini"
    # File systems stamp with a coarse clock that may lag time.time_ns().
    before = time.time_ns() - 50_000_000
    ini.write_text("[app]\n")
    calls = Calls()
    with RestartWatcher(calls, [str(ini)], interval=0, events=False) as watcher:
        watcher.start(since_ns=before)
        wait_until(lambda: calls.count, RESTART_TIMEOUT, "the watcher to call on_change")


# -- the command, in a subprocess ---------------------------------------------


class Command:
    """``python -m memento`` in a subprocess; threads collect its output lines."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memento", *args],
            cwd=cwd,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=_collect, args=(stream, lines), name=name, daemon=True)
            for stream, lines, name in (
                (self.proc.stdout, self.out, "memento-stdout"),
                (self.proc.stderr, self.err, "memento-stderr"),
            )
        ]
        for reader in self._readers:
            reader.start()

    @property
    def log(self) -> str:
        return "".join(self.err)

    def urls(self) -> list[str]:
        """The addresses printed so far, one per process image."""
        return re.findall(r"http://127\.0\.0\.1:\d+/", "".join(self.out))

    def serving(self, count: int = 1) -> str:
        """Wait for the ``count``-th "serving" line; return its address."""

        def printed() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}\n{self.output()}")
            return len(self.urls()) >= count

        try:
            wait_until(printed, timeout=RESTART_TIMEOUT, what=f"serving line {count}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None
        return self.urls()[count - 1]

    def stop(self) -> int:
        """Ctrl-C; the exit status (the process is killed after 10 s)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"Ctrl-C did not end it\n{self.output()}") from None
        finally:
            self._close_pipes()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def output(self) -> str:
        return "".join(self.out) + "".join(self.err)


def _collect(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    write_package(tmp_path, "shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    return tmp_path


@pytest.fixture
def command(shop: Path) -> Iterator[Callable[..., Command]]:
    started: list[Command] = []

    def start(*args: str) -> Command:
        started.append(Command(shop, *args))
        return started[-1]

    yield start
    for cmd in started:
        cmd.kill()


class Hammer:
    """GET one URL over and over in a thread, each request on a new connection.

    Each request has ``timeout`` seconds; the thread stops when told, after
    ``limit`` requests or after ``duration`` seconds, whichever comes first.
    """

    def __init__(
        self, url: str, *, timeout: float = 10.0, limit: int = 5000, duration: float = 60.0
    ) -> None:
        self.url, self.timeout, self.limit, self.duration = url, timeout, limit, duration
        self.bodies: list[list[str]] = []
        self.failures: list[str] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hammer", daemon=True)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)
        assert not self._thread.is_alive(), "the hammer thread did not stop"

    def _run(self) -> None:
        deadline = time.monotonic() + self.duration
        while (
            not self._stop.is_set()
            and len(self.bodies) + len(self.failures) < self.limit
            and time.monotonic() < deadline
        ):
            started = time.monotonic()
            try:
                self.bodies.append(fetch(self.url, self.timeout))
            except (OSError, http.client.HTTPException) as exc:
                # refused, reset, timed out, or an HTTP error status
                self.failures.append(repr(exc))
            self.slowest = max(self.slowest, time.monotonic() - started)

    def answers(self, count: int) -> Callable[[], bool]:
        """A predicate: ``count`` more answers than now have come."""
        target = len(self.bodies) + count
        return lambda: len(self.bodies) >= target


@pytest.mark.parametrize("server", ["waitress", "wsgiref"])
def test_restart_on_pattern_refuses_no_request(shop, command, server):
    ini = shop / "app.ini"
    ini.write_text("[app]\ncolour = red\n")
    port = free_port()
    cmd = command(
        "--server", server, "--port", str(port), "--interval", "0",
        "--restart-on", "*.ini", "shop.wsgi:app",
    )  # fmt: skip
    url = cmd.serving()
    assert url == f"http://127.0.0.1:{port}/"
    pid, boot, _ = fetch(url)
    assert int(pid) == cmd.proc.pid

    started = time.monotonic()
    with Hammer(url) as hammer:
        wait_until(hammer.answers(20), what="the first answers")
        edit(ini, "[app]\ncolour = blue\n")
        wait_until(
            lambda: hammer.bodies[-1][1] != boot,
            timeout=RESTART_TIMEOUT,
            what=f"the restarted process to answer\n{cmd.output()}",
        )
        wait_until(hammer.answers(20), what="answers after the restart")
    elapsed = time.monotonic() - started

    assert hammer.failures == [], cmd.output()
    boots = [body[1] for body in hammer.bodies]
    restarted_at = boots.index(boots[-1])
    assert set(boots[:restarted_at]) == {boot}, "one restart, every answer from one process"
    assert set(boots[restarted_at:]) == {boots[-1]}
    assert {body[0] for body in hammer.bodies} == {str(cmd.proc.pid)}, "execv keeps the pid"
    assert cmd.urls() == [url, url]
    assert "restarting the process (changed: app.ini)" in cmd.log
    assert cmd.stop() == 0, cmd.output()
    assert "Traceback" not in cmd.log
    print(
        f"{server}: {len(hammer.bodies)} answers in {elapsed:.2f} s, none refused;"
        f" the slowest (waiting out the restart) took {hammer.slowest:.2f} s"
    )


def test_kept_module_restarts_and_the_rest_reloads_in_process(shop, command):
    pkg = shop / "shop"
    (pkg / "settings.py").write_text(SETTINGS % "red")
    (pkg / "wsgi.py").write_text(APP_WITH_SETTINGS % "v1")
    port = free_port()
    cmd = command(
        "--port", str(port), "--interval", "0", "--keep", "shop.settings", "shop.wsgi:app"
    )  # fmt: skip
    url = cmd.serving()
    pid, boot, colour, version = fetch(url)
    assert (int(pid), colour, version) == (cmd.proc.pid, "red", "v1")

    edit(pkg / "wsgi.py", APP_WITH_SETTINGS % "v2")
    wait_until(lambda: fetch(url)[3] == "v2", what="the edit reloaded in process")
    assert fetch(url) == [pid, boot, "red", "v2"], "settings kept: the same process"
    assert "reloaded" in cmd.log and "restarting" not in cmd.log

    edit(pkg / "settings.py", SETTINGS % "blue")
    wait_until(lambda: fetch(url)[1] != boot, timeout=RESTART_TIMEOUT, what="a restart")
    assert cmd.serving(2) == url
    restarted = fetch(url)
    assert restarted[0] == pid and restarted[2:] == ["blue", "v2"]
    assert "restarting the process (changed: shop/settings.py)" in cmd.log

    # the new process reloads in process and restarts just the same
    edit(pkg / "wsgi.py", APP_WITH_SETTINGS % "v3")
    wait_until(lambda: fetch(url)[3] == "v3", what="the edit reloaded in the new process")
    assert fetch(url)[1] == restarted[1]
    edit(pkg / "settings.py", SETTINGS % "green")
    wait_until(lambda: fetch(url)[2] == "green", timeout=RESTART_TIMEOUT, what="a second restart")
    assert cmd.serving(3) == url
    assert cmd.stop() == 0, cmd.output()


def serve_kept_settings(
    shop: Path, command: Callable[..., Command], colour: str
) -> tuple[Command, str]:
    """Serve APP_WITH_SETTINGS "v1" with ``--keep shop.settings``; the command and its address."""
    (shop / "shop" / "settings.py").write_text(SETTINGS % colour)
    (shop / "shop" / "wsgi.py").write_text(APP_WITH_SETTINGS % "v1")
    cmd = command(
        "--port", str(free_port()), "--interval", "0", "--keep", "shop.settings", "shop.wsgi:app"
    )  # fmt: skip
    return cmd, cmd.serving()


def test_kept_module_that_fails_after_a_restart_is_fixed_in_process(shop, command):
    pkg = shop / "shop"
    cmd, url = serve_kept_settings(shop, command, "red")
    edit(pkg / "settings.py", "COLOUR = (\n")
    cmd.serving(2)
    with pytest.raises(urllib.error.HTTPError) as info:
        fetch(url)
    assert info.value.code == 500
    assert "SyntaxError" in info.value.read().decode()
    info.value.close()

    edit(pkg / "settings.py", SETTINGS % "blue")
    wait_until(lambda: answer(url) == "blue", what="the fix served by the restarted process")
    assert len(cmd.urls()) == 2, "a module never imported here is imported in process"
    edit(pkg / "settings.py", SETTINGS % "green")
    cmd.serving(3)
    assert fetch(url)[2] == "green"
    assert cmd.stop() == 0, cmd.output()


def answer(url: str) -> str | None:
    """The colour answered, or None while the application answers an error."""
    try:
        return fetch(url)[2]
    except urllib.error.HTTPError as exc:
        exc.close()
        return None


def test_ctrl_c_after_a_restart_exits_0(shop, command):
    ini = shop / "app.ini"
    ini.write_text("[app]\n")
    cmd = command("--port", str(free_port()), "--restart-on", "app.ini", "shop.wsgi:app")
    cmd.serving()
    edit(ini, "[app]\ncolour = blue\n")
    cmd.serving(2)
    assert cmd.stop() == 0, cmd.output()
    assert "Traceback" not in cmd.log


def test_missing_restart_on_directory_exits_2(shop):
    result = run_cli(["--restart-on", "nodir/*.ini", "shop.wsgi:app"], shop)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "nodir/*.ini" in result.stderr.strip().splitlines()[-1]


# -- nothing edited around a restart is lost ----------------------------------


def save(path: Path, text: str) -> None:
    """Save as many editors do: write a new file, then rename it over the old one."""
    new = path.with_name(path.name + ".tmp")
    new.write_text(text)
    os.replace(new, path)


def early_in_a_second() -> None:
    """Wait until a wall-clock second has just begun, so that the next saves share it."""
    wait_until(lambda: time.time() % 1 < 0.1, timeout=2, what="a second to begin")


def same_second(*stamps: os.stat_result) -> bool:
    """Whether CPython's bytecode check tells these saves of a file apart: it
    compares the whole second of the modification time and the size."""
    return len({(stamp.st_mtime_ns // 10**9, stamp.st_size) for stamp in stamps}) == 1


def restarts_settle(cmd: Command) -> None:
    """Restarts stop: a handoff must not loop. An edit seen only after the
    restart it came during may bring one more."""
    deadline = time.monotonic() + RESTART_TIMEOUT
    while True:
        restarts = len(cmd.urls())
        time.sleep(1.0)  # nothing to wait for: no restart must come
        if len(cmd.urls()) == restarts:
            return
        assert time.monotonic() < deadline, f"restarts go on\n{cmd.output()}"


SAME_SECOND_CASES = {
    "kept module": ("settings.py", ["--keep", "shop.settings"]),
    "restart-on module": ("settings.py", ["--restart-on", "shop/settings.py"]),
    "restart-on file": ("settings.ini", ["--restart-on", "settings.ini"]),
}


def write_colour(shop: Path, where: str, colour: str) -> Path:
    if where == "settings.ini":
        path = shop / "settings.ini"
        save(path, colour + "\n")
    else:
        path = shop / "shop" / "settings.py"
        save(path, SETTINGS % colour)
    return path


@pytest.mark.parametrize("case", list(SAME_SECOND_CASES))
def test_two_quick_saves_of_equal_size_serve_the_last(shop, command, case):
    where, args = SAME_SECOND_CASES[case]
    app = APP_READING_INI if where == "settings.ini" else APP_WITH_SETTINGS
    (shop / "shop" / "wsgi.py").write_text(app % "v1")
    write_colour(shop, where, "AAAA")
    cmd = command("--port", str(free_port()), "--interval", "0", *args, "shop.wsgi:app")
    url = cmd.serving()
    assert fetch(url)[2] == "AAAA"

    # A loaded machine may push the second save into the next second: the
    # last save is served all the same, and the pair is tried again.
    for attempt in range(3):
        early_in_a_second()
        path = write_colour(shop, where, f"B{attempt}BB")
        first = path.stat()
        time.sleep(0.45)  # the second save comes while the first one restarts
        last = f"C{attempt}CC"
        write_colour(shop, where, last)
        both = same_second(first, path.stat())
        wait_until(
            lambda last=last: fetch(url)[2] == last,
            timeout=RESTART_TIMEOUT,
            what=f"the last save served\n{cmd.output()}",
        )
        restarts_settle(cmd)
        assert fetch(url)[2] == last
        if both:
            break
    assert both, "never two saves in one second, at one size"
    assert "reloaded" not in cmd.log, "a restart, never an in-process reload"
    assert cmd.stop() == 0, cmd.output()


def test_edits_made_during_a_restart_are_served(shop, command):
    pkg = shop / "shop"
    cmd, url = serve_kept_settings(shop, command, "AAAA")

    early_in_a_second()
    save(pkg / "wsgi.py", APP_WITH_SETTINGS % "v2")
    reloaded = (pkg / "wsgi.py").stat()
    # reloaded in process: the bytecode of v2 is written within this second
    wait_until(lambda: fetch(url)[3] == "v2", what="v2 reloaded in process")
    save(pkg / "settings.py", SETTINGS % "BBBB")
    wait_until(lambda: "restarting the process" in cmd.log, RESTART_TIMEOUT, "a restart")
    save(pkg / "wsgi.py", APP_WITH_SETTINGS % "v3")
    save(pkg / "settings.py", SETTINGS % "CCCC")
    assert same_second(reloaded, (pkg / "wsgi.py").stat()), "v2's bytecode would pass for v3"

    wait_until(
        lambda: fetch(url)[2:] == ["CCCC", "v3"],
        timeout=RESTART_TIMEOUT,
        what=f"both edits served\n{cmd.output()}",
    )
    restarts_settle(cmd)
    assert fetch(url)[2:] == ["CCCC", "v3"]
    assert cmd.stop() == 0, cmd.output()


NAIVE_RESTART = """\
import os
from pathlib import Path

settings = Path("shop/settings.py")
second = (os.stat(".").st_mtime_ns // 10**9 - 5) * 10**9
settings.write_text({source!r})
os.utime(settings, ns=(second, second + {offset_ms} * 10**6))
from shop.settings import COLOUR
print(COLOUR)
"""


def test_a_naive_restart_serves_stale_bytecode_here(shop):
    # The control: a new interpreter importing a module saved twice in one
    # second at one size (what a restart that keeps the bytecode does) gets
    # the first save. Restarts discard that bytecode.
    first = NAIVE_RESTART.format(source=SETTINGS % "BBBB", offset_ms=100)
    assert run_python(first, shop).stdout.split() == ["BBBB"]
    second = NAIVE_RESTART.format(source=SETTINGS % "CCCC", offset_ms=550)
    assert run_python(second, shop).stdout.split() == ["BBBB"]


def test_restart_on_module_restarts_at_once_without_reloading_in_process(shop, command):
    pkg = shop / "shop"
    (pkg / "settings.py").write_text(SETTINGS % "red")
    (pkg / "wsgi.py").write_text(APP_WITH_SETTINGS % "v1")
    cmd = command("--port", str(free_port()), "--restart-on", "shop/settings.py", "shop.wsgi:app")
    url = cmd.serving()

    with Hammer(url) as hammer:
        wait_until(hammer.answers(10), what="the first answers")
        edit(pkg / "settings.py", SETTINGS % "blue")
        wait_until(
            lambda: hammer.bodies[-1][2] == "blue",
            timeout=RESTART_TIMEOUT,
            what=f"the restarted process to answer\n{cmd.output()}",
        )
    assert hammer.failures == [], cmd.output()
    colours = [body[2] for body in hammer.bodies]
    assert set(colours[colours.index("blue") :]) == {"blue"}
    assert "reloaded" not in cmd.log, "restarted without reloading in process first"
    assert "restarting the process (changed: shop/settings.py)" in cmd.log

    edit(pkg / "wsgi.py", APP_WITH_SETTINGS % "v2")
    wait_until(lambda: fetch(url)[3] == "v2", what="the view reloaded in process")
    assert len(cmd.urls()) == 2
    assert cmd.stop() == 0, cmd.output()
