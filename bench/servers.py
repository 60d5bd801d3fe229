"""The servers the benchmarks compare: how to start them, wait for them, stop them.

Each contender is started in its own process group on 127.0.0.1, so stopping
it ends the reloader and every worker it spawned. This file is also the
entry point of the servers that have no command line of their own::

    python bench/servers.py memento --app-dir DIR --app pkg.wsgi:app --port P ...
    python bench/servers.py bare --app-dir DIR --app pkg.wsgi:app --port P
    python bench/servers.py werkzeug --app-dir DIR --app pkg.wsgi:app --port P
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
THREADS = 8

#: Contender kinds that restart the process on a change.
RESTARTERS = ("hupper", "werkzeug", "gunicorn")


@dataclass(frozen=True)
class Contender:
    """One way of serving the application and reloading it on an edit.

    ``kind``: ``memento``, ``bare`` (waitress, no reloading) or one of
    :data:`RESTARTERS`. For memento: ``policy`` (``mori``/``assassin``),
    ``scope``, ``events`` (``False``: the stat poller, ``True``: the
    watchfiles thread) and ``interval``.
    """

    kind: str
    policy: str = "mori"
    scope: str = "all"
    events: bool = False
    interval: float = 0.0
    watch: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        if self.kind != "memento":
            return {"hupper": "hupper+waitress"}.get(self.kind, self.kind)
        backend = "watch" if self.events else "poll"
        if not self.events and self.interval:
            backend += f"@{self.interval:g}"
        return f"memento:{self.policy}/{self.scope}/{backend}"

    @property
    def restarts(self) -> bool:
        return self.kind in RESTARTERS

    @property
    def gap(self) -> tuple[float, float]:
        """Seconds to wait after a fresh answer before the next edit (bounds).

        hupper's worker reports its imported files to the monitor once a
        second and the monitor takes their first stamp at its next poll, so
        an edit made within ~2 s of a restart is never seen: give it time.
        """
        return (1.8, 2.8) if self.kind == "hupper" else (0.15, 0.45)

    def command(self, statement: str, root: str, port: int) -> list[str]:
        """The command line serving ``statement`` from ``root`` on ``port``."""
        common = ["--app-dir", root, "--app", statement, "--port", str(port)]
        watch = [arg for path in self.watch for arg in ("--watch", path)]
        if self.kind == "memento":
            return [
                sys.executable,
                str(HERE / "servers.py"),
                "memento",
                *common,
                "--policy",
                self.policy,
                "--scope",
                self.scope,
                "--interval",
                str(self.interval),
                "--events",
                "1" if self.events else "0",
                *watch,
            ]
        if self.kind in ("bare", "werkzeug"):
            return [
                sys.executable,
                str(HERE / "servers.py"),
                self.kind,
                *common,
                *watch,
            ]
        if self.kind == "hupper":
            globs = [arg for path in self.watch for arg in ("-w", f"{path}/**/*.py")]
            return [
                script("hupper"),
                *globs,
                "-m",
                "waitress",
                f"--host={HOST}",
                f"--port={port}",
                f"--threads={THREADS}",
                statement,
            ]
        if self.kind == "gunicorn":
            return [
                sys.executable,
                "-m",
                "gunicorn",
                "--reload",
                "--workers=1",
                f"--bind={HOST}:{port}",
                f"--chdir={root}",
                statement,
            ]
        raise ValueError(f"contender kind: unknown {self.kind!r}")


def script(name: str) -> str:
    """The console script ``name`` of the running interpreter's environment."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"console script {name!r} not found")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_env(pythonpath: str | None = None) -> dict[str, str]:
    """The environment of a server: bytecode on, output unbuffered, PYTHONPATH
    only ``pythonpath`` (the copy of memento a run measures)."""
    env = dict(os.environ)
    for name in (
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONPATH",
        "PYTHONHOME",
        "WERKZEUG_RUN_MAIN",
    ):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


class Server:
    """A server in its own process group; a context manager that always stops it."""

    def __init__(
        self,
        argv: Sequence[str],
        cwd: str,
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.port = port
        self.env = env if env is not None else server_env()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            log.write(("$ " + " ".join(self.argv) + "\n").encode())
            log.flush()
            self.started = time.perf_counter()
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0, path: str = "/") -> float:
        """Wait until ``path`` answers 200; return the seconds since the start."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.tail()}")
            status, body = request(self.port, path, timeout=5.0)
            if status == 200:
                return time.perf_counter() - self.started
            last = f"{status}: {body[:200]}"
            time.sleep(0.02)
        raise TimeoutError(f"server not ready after {timeout:g} s ({last}): {self.tail()}")

    def stop(self, grace: float = 5.0) -> None:
        """End the process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        # Workers of a restarting server may outlive the leader: kill what is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)

    def group(self) -> list[int]:
        """The ids of the live processes in the server's process group."""
        if self.process is None:
            return []
        return process_group(self.process.pid)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])


def process_group(pgid: int) -> list[int]:
    """The ids of the live processes whose process group is ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_stat(int(entry))
        if fields is not None and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as file:
            text = file.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_ticks(pids: Sequence[int]) -> dict[int, int]:
    """User plus system clock ticks used so far by each live process of ``pids``."""
    ticks = {}
    for pid in pids:
        fields = proc_stat(pid)
        if fields is not None:
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def request(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int | str, str]:
    """GET ``path`` on a new connection: ``(status, body)`` or ``(error, detail)``.

    Error kinds: ``"refused"`` (nobody listens), ``"timeout"``, ``"failed"``
    (reset, closed early, bad answer).
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "text/html"})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except ConnectionRefusedError as exc:
        return "refused", str(exc)
    except (socket.timeout, TimeoutError) as exc:
        return "timeout", str(exc)
    except (OSError, http.client.HTTPException) as exc:
        return "failed", f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


@contextlib.contextmanager
def serving(
    contender: Contender,
    statement: str,
    root: str,
    log_path: Path,
    timeout: float = 90.0,
    pythonpath: str | None = None,
) -> Iterator[tuple[Server, float]]:
    """Start ``contender`` on a free port; yield the server and its start-up seconds.

    ``pythonpath`` goes to memento's servers only (the others never import it).
    """
    port = free_port()
    env = server_env(pythonpath if contender.kind == "memento" else None)
    command = contender.command(statement, root, port)
    server = Server(command, root, port, log_path, env)
    with server:
        startup = server.wait_ready(timeout)
        yield server, startup


# -- entry points of the servers started by this file ------------------------------


def _prepare(args: argparse.Namespace) -> None:
    # This script's folder holds the generated trees: keep it off sys.path
    # (werkzeug's stat reloader walks every folder on sys.path).
    here = str(HERE)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, args.app_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _import_app(statement: str) -> object:
    module, _, attr = statement.partition(":")
    return getattr(importlib.import_module(module), attr)


def serve_memento(args: argparse.Namespace) -> None:
    import waitress

    import memento

    logging.getLogger("bench").info("memento %s", memento.__file__)
    options = {
        "reload_on": "change",
        "scope": args.scope,
        "interval": args.interval,
        "events": bool(args.events),
    }
    if args.watch:
        options["watch"] = args.watch
    if args.policy == "mori":
        app = memento.Mori(args.app, **options)
    else:
        package = args.app.partition(".")[0]
        app = memento.Assassin(args.app, [package], **options)
    try:
        waitress.serve(app, host=HOST, port=args.port, threads=THREADS)
    finally:
        app.close()


def serve_bare(args: argparse.Namespace) -> None:
    import waitress

    waitress.serve(_import_app(args.app), host=HOST, port=args.port, threads=THREADS)


def serve_werkzeug(args: argparse.Namespace) -> None:
    from werkzeug.serving import run_simple

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    run_simple(
        HOST,
        args.port,
        _import_app(args.app),
        use_reloader=True,
        threaded=True,
        extra_files=args.watch or None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve a benchmark application")
    parser.add_argument("kind", choices=("memento", "bare", "werkzeug"))
    parser.add_argument("--app-dir", required=True)
    parser.add_argument("--app", required=True, help="pkg.wsgi:app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--policy", choices=("mori", "assassin"), default="mori")
    parser.add_argument("--scope", default="all")
    parser.add_argument("--interval", type=float, default=0.3)
    parser.add_argument("--events", type=int, choices=(0, 1), default=0)
    parser.add_argument("--watch", action="append", default=[])
    args = parser.parse_args(argv)
    _prepare(args)
    {"memento": serve_memento, "bare": serve_bare, "werkzeug": serve_werkzeug}[args.kind](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
