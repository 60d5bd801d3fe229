"""In-process measurements, each run in a fresh interpreter; prints one JSON object.

* ``limit``: the floor memento is compared against. Edit the marker, forget
  the application's modules from ``sys.modules``, import them again and
  answer ``/`` with a direct WSGI call: no change detection, no server.
* ``memory``: resident memory of a process serving the application under
  memento after a number of reloads, each driven by an edit and a direct
  WSGI call.
* ``profile``: cProfile of one memento reload.
* ``edits``: save → fresh through memento with direct WSGI calls (the
  stat poller, ``interval=0``): each edit's time and modules forgotten.
* ``detect``: with the watcher, the time from a lone save to the reload
  starting and to its end, no request made (the reload runs ahead of it).

::

    python bench/probes.py limit --app-dir DIR --app pkg.wsgi:app --edits 10
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import importlib.util
import io
import json
import os
import pstats
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable
from wsgiref.util import setup_testing_defaults

from client import summarize
from genapp import marker_value, read_marker, write_marker

WSGIApp = Callable[..., Any]


def call(app: WSGIApp, path: str = "/") -> tuple[str, str]:
    """Answer ``path`` with a direct WSGI call; always closes the response."""
    environ: dict[str, Any] = {"PATH_INFO": path, "HTTP_ACCEPT": "text/html"}
    setup_testing_defaults(environ)
    environ["REMOTE_ADDR"] = "127.0.0.1"
    statuses: list[str] = []

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        statuses.append(status)

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return statuses[-1], body.decode("utf-8", "replace")


def marker_path(statement: str) -> Path:
    package = statement.partition(":")[0].partition(".")[0]
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / "marker.py"


def resident_mb() -> float:
    """This process's resident set size in MB, from ``/proc/self/statm``."""
    with open("/proc/self/statm", encoding="ascii") as file:
        pages = int(file.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    """How many file descriptors this process has open, from ``/proc/self/fd``."""
    return len(os.listdir("/proc/self/fd"))


def forget(package: str) -> int:
    names = [n for n in sys.modules if n == package or n.startswith(package + ".")]
    for name in names:
        del sys.modules[name]
    return len(names)


def load_app(statement: str) -> WSGIApp:
    module, _, attr = statement.partition(":")
    return getattr(importlib.import_module(module), attr)


def limit(
    args: argparse.Namespace,
    path: Path | None = None,
    write: Callable[[Path, str], None] = write_marker,
) -> dict:
    """Forget and re-import the user's modules after each edit; time edit→fresh.

    ``write(path, value)`` makes an edit (default: ``marker.py`` rewritten)."""
    package = args.app.partition(".")[0]
    path = path or marker_path(args.app)
    app = load_app(args.app)
    call(app)
    rng = random.Random(1)
    samples, imports, forgotten = [], [], 0
    for index in range(args.edits):
        time.sleep(rng.uniform(0.05, 0.15))
        value = marker_value(args.seq + index)
        write(path, value)
        written = time.perf_counter()
        forgotten = forget(package)
        importlib.invalidate_caches()
        app = load_app(args.app)
        imported = time.perf_counter()
        status, body = call(app)
        answered = time.perf_counter()
        if read_marker(body) != value:
            raise RuntimeError(f"LIMIT: expected {value!r}, got {status} {body[:200]!r}")
        samples.append(answered - written)
        imports.append(imported - written)
    return {
        "edits": args.edits,
        "samples_ms": [round(s * 1000, 2) for s in samples],
        **summarize(samples),
        "import_median_ms": round(statistics.median(imports) * 1000, 2),
        "modules": forgotten,
        "edit_timeouts": 0,
        "refused": 0,
        "failed": 0,
        "errors": 0,
        "stale": 0,
        "wrong": 0,
        "flapped": 0,
    }


def make_middleware(args: argparse.Namespace) -> Any:
    import memento

    options = {"interval": 0, "events": False, "scope": args.scope}
    if args.policy == "mori":
        return memento.Mori(args.app, **options)
    return memento.Assassin(args.app, [args.app.partition(".")[0]], **options)


def reload_once(app: WSGIApp, path: Path, value: str) -> None:
    write_marker(path, value)
    status, body = call(app)
    if read_marker(body) != value:
        raise RuntimeError(f"expected {value!r} after a reload, got {status} {body[:300]!r}")


class Reimporter:
    """The same reloads without memento: forget the package, import it again."""

    def __init__(self, statement: str) -> None:
        self.statement = statement
        self.package = statement.partition(".")[0]
        self.app = load_app(statement)
        self.reloads = 0

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Any:
        return self.app(environ, start_response)

    def reload(self) -> None:
        forget(self.package)
        importlib.invalidate_caches()
        self.app = load_app(self.statement)
        self.reloads += 1


def memory(args: argparse.Namespace) -> dict:
    """RSS after the first load and after each count of reloads in ``--reloads``.

    ``--policy none`` reloads without memento (forget and import again, as
    LIMIT does): the growth Python and the application cause by themselves.
    """
    checkpoints = sorted(int(n) for n in args.reloads.split(","))
    app = Reimporter(args.app) if args.policy == "none" else make_middleware(args)
    path = marker_path(args.app)
    call(app)
    gc.collect()
    rss = {"0": round(resident_mb(), 2)}
    fds = {"0": open_fds()}
    durations = []
    done = 0
    for checkpoint in checkpoints:
        while done < checkpoint:
            started = time.perf_counter()
            if isinstance(app, Reimporter):
                write_marker(path, marker_value(args.seq + done))
                app.reload()
                call(app)
            else:
                reload_once(app, path, marker_value(args.seq + done))
            durations.append(time.perf_counter() - started)
            done += 1
        gc.collect()
        rss[str(checkpoint)] = round(resident_mb(), 2)
        fds[str(checkpoint)] = open_fds()
    reloads = app.reloads if isinstance(app, Reimporter) else app.stats.reloads
    alive = _model_classes_alive(args.app.partition(".")[0])
    if not isinstance(app, Reimporter):
        app.close()
    first, last = str(checkpoints[0]), str(checkpoints[-1])
    return {
        "rss_mb": rss,
        "growth_mb": round(rss[last] - rss[first], 2),
        "growth_per_reload_kb": round(
            (rss[last] - rss[first]) * 1024 / max(1, checkpoints[-1] - checkpoints[0]),
            2,
        ),
        "fds": fds,
        "fd_growth": fds[last] - fds["0"],
        "reloads": reloads,
        "reload_median_ms": round(statistics.median(durations) * 1000, 2),
        "modules": sum(1 for n in sys.modules if n.startswith(args.app.partition(".")[0])),
        "generations_alive": alive,
    }


def _model_classes_alive(package: str) -> int:
    """How many ``User`` classes of the package are alive (the Flask-SQLAlchemy
    application's model): one per generation that is not garbage."""
    gc.collect()
    return sum(
        1
        for obj in gc.get_objects()
        if isinstance(obj, type) and obj.__name__ == "User" and obj.__module__.startswith(package)
    )


def overhead(args: argparse.Namespace) -> dict:
    """Microseconds per direct WSGI call of ``/``, bare and through memento, when
    nothing changes: the middleware's own cost per request, without a server.

    Blocks of calls alternate between the two; the fastest block of each counts.
    Then the same calls from 8 threads at once, as a threaded server makes them:
    the calls per second wrapped over bare (median of 3 rounds of 0.5 s each)
    shows what the middleware's locks cost when requests contend for them.
    """
    import memento

    app = memento.Mori(
        args.app, interval=args.interval, events=bool(args.events), reload_on="change"
    )
    call(app)  # imports the application through the middleware, tracks its files
    bare = app.resolve()
    environ: dict[str, Any] = {"PATH_INFO": "/", "REMOTE_ADDR": "127.0.0.1"}
    setup_testing_defaults(environ)

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        pass

    def block(target: WSGIApp, count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            result = target(dict(environ), start_response)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return (time.perf_counter() - started) / count

    def threaded(target: WSGIApp, threads: int, seconds: float) -> float:
        deadline = time.perf_counter() + seconds
        counts = [0] * threads

        def work(index: int) -> None:
            while time.perf_counter() < deadline:
                block(target, 20)
                counts[index] += 20

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(seconds + 10)
        return sum(counts) / seconds

    count = 500
    times: dict[str, list[float]] = {"bare": [], "wrapped": []}
    for _ in range(args.blocks):
        times["bare"].append(block(bare, count))
        times["wrapped"].append(block(app, count))
    ratios = [threaded(app, 8, 0.5) / threaded(bare, 8, 0.5) for _ in range(3)]
    app.close()
    bare_us, wrapped_us = min(times["bare"]) * 1e6, min(times["wrapped"]) * 1e6
    return {
        "bare_us": round(bare_us, 2),
        "wrapped_us": round(wrapped_us, 2),
        "overhead_us": round(wrapped_us - bare_us, 2),
        "calls": count * args.blocks,
        "single_ratio": round(bare_us / wrapped_us, 3),
        "threads8_ratio": round(statistics.median(ratios), 3),
    }


def edits(args: argparse.Namespace) -> dict:
    """Save → fresh answer through memento, no server: reload and first request."""
    app = make_middleware(args)
    path = marker_path(args.app)
    call(app)
    reload_once(app, path, marker_value(args.seq))  # warm-up
    rng = random.Random(3)
    samples, forgotten = [], []
    for index in range(1, args.edits + 1):
        time.sleep(rng.uniform(0.05, 0.15))
        value = marker_value(args.seq + index)
        write_marker(path, value)
        written = time.perf_counter()
        status, body = call(app)
        samples.append(time.perf_counter() - written)
        if read_marker(body) != value:
            raise RuntimeError(f"edits: expected {value!r}, got {status} {body[:200]!r}")
        assert app.stats.last is not None
        forgotten.append(len(app.stats.last.forgotten))
    owned = len(app._forgettable())
    app.close()
    return {
        "edits": args.edits,
        "samples_ms": [round(s * 1000, 2) for s in samples],
        **summarize(samples),
        "forgotten_median": statistics.median(forgotten),
        "owned": owned,
    }


def detect(args: argparse.Namespace) -> dict:
    """Save → reload start and save → reload end with the watcher, no request made.

    The start is when the middleware's reload begins (what the gate waited
    for and the watcher gathered are before it); the end when it is done.
    """
    import memento

    app = memento.Mori(args.app, events=True, scope=args.scope)
    path = marker_path(args.app)
    call(app)
    started: list[float] = []
    reload = app._reload

    def timed(*arguments: Any) -> None:
        started.append(time.perf_counter())
        reload(*arguments)

    app._reload = timed  # type: ignore[method-assign]
    rng = random.Random(2)
    to_start, to_end = [], []
    for index in range(args.edits):
        time.sleep(rng.uniform(0.15, 0.3))
        reloads = app.stats.reloads
        value = marker_value(args.seq + index)
        write_marker(path, value)
        written = time.perf_counter()
        deadline = written + 10
        while app.stats.reloads == reloads and time.perf_counter() < deadline:
            time.sleep(0.0005)
        ended = time.perf_counter()
        if app.stats.reloads == reloads or not started:
            raise RuntimeError(f"detect: no reload within 10 s of edit {index}")
        to_start.append(started[-1] - written)
        to_end.append(ended - written)
        status, body = call(app)
        if read_marker(body) != value:
            raise RuntimeError(f"detect: expected {value!r}, got {status} {body[:200]!r}")
    app.close()
    return {
        "edits": args.edits,
        "start_samples_ms": [round(s * 1000, 2) for s in to_start],
        "start_median_ms": round(statistics.median(to_start) * 1000, 2),
        "start_max_ms": round(max(to_start) * 1000, 2),
        "end_median_ms": round(statistics.median(to_end) * 1000, 2),
        "background_reloads": app.stats.reloads,
    }


def profile(args: argparse.Namespace) -> dict:
    """cProfile one reload (the request that finds the edit), after a warm-up reload."""
    app = make_middleware(args)
    path = marker_path(args.app)
    call(app)
    reload_once(app, path, marker_value(args.seq))
    value = marker_value(args.seq + 1)
    write_marker(path, value)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    status, body = call(app)
    profiler.disable()
    elapsed = time.perf_counter() - started
    if read_marker(body) != value:
        raise RuntimeError(f"expected {value!r}, got {status} {body[:300]!r}")
    last = app.stats.last
    app.close()
    stats = pstats.Stats(profiler)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    if args.dump:
        Path(args.dump).write_text(text.getvalue(), encoding="utf-8")
        profiler.dump_stats(str(Path(args.dump).with_suffix(".prof")))
    return {
        "request_ms": round(elapsed * 1000, 2),
        "reload_ms": round(last.duration * 1000, 2) if last else None,
        "forgotten": len(last.forgotten) if last else None,
        "top_tottime": _top(stats, "tottime", args.top),
        "top_cumulative": _top(stats, "cumulative", args.top),
        "memento_cumulative": _top(stats, "cumulative", args.top, only="/memento/"),
    }


def _top(stats: pstats.Stats, key: str, count: int, only: str = "") -> list[dict]:
    rows = []
    entries = [
        item
        for item in stats.stats.items()  # type: ignore[attr-defined]
        if only in item[0][0]
    ]
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in sorted(
        entries,
        key=lambda item: item[1][2 if key == "tottime" else 3],
        reverse=True,
    )[:count]:
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({func})",
                "calls": calls,
                "tottime_ms": round(tottime * 1000, 2),
                "cumtime_ms": round(cumtime * 1000, 2),
            }
        )
    return rows


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/memento/", "/lib/python"):
        if marker in filename:
            return marker.strip("/") + "/" + filename.split(marker, 1)[1]
    return filename if filename.startswith("<") else os.path.basename(filename)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="in-process benchmark probes")
    parser.add_argument(
        "probe", choices=("limit", "memory", "profile", "overhead", "detect", "edits")
    )
    parser.add_argument("--app-dir", required=True)
    parser.add_argument("--app", required=True, help="pkg.wsgi:app")
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--seq", type=int, default=1, help="first marker number")
    parser.add_argument("--policy", choices=("mori", "assassin", "none"), default="mori")
    parser.add_argument("--scope", default="all")
    parser.add_argument("--reloads", default="50,300", help="checkpoints, comma separated")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--interval", type=float, default=0.3)
    parser.add_argument("--events", type=int, choices=(0, 1), default=0)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--dump", default=None, help="write the profile text here")
    args = parser.parse_args(argv)
    sys.path.insert(0, args.app_dir)
    probes = {
        "limit": limit,
        "memory": memory,
        "profile": profile,
        "overhead": overhead,
        "detect": detect,
        "edits": edits,
    }
    probe = probes[args.probe]
    print(json.dumps(probe(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
