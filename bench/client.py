"""The client side of the benchmarks: edit→fresh latency and load generation.

The load generator also runs on its own, in a separate process from the
server it measures::

    python bench/client.py load --port P --seconds 5 --connections 8
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import shutil
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from genapp import marker_value, read_marker, write_marker
from servers import HOST, request

#: Seconds between two polls of ``/`` after an edit.
POLL = 0.005
#: Timeout of one poll: a reloading memento holds the request that found the change.
POLL_TIMEOUT = 5.0
#: Longest wait for a fresh answer after one edit.
EDIT_DEADLINE = 30.0


class Sequence:
    """Hands out marker numbers, unique within one benchmark run."""

    def __init__(self, start: int = 1) -> None:
        self.value = start

    def next(self) -> int:
        value, self.value = self.value, self.value + 1
        return value


def summarize(samples: list[float]) -> dict[str, float | None]:
    """Median, min, max and mean of latencies in seconds, as milliseconds."""
    if not samples:
        return {"median_ms": None, "min_ms": None, "max_ms": None, "mean_ms": None}
    return {
        "median_ms": round(statistics.median(samples) * 1000, 2),
        "min_ms": round(min(samples) * 1000, 2),
        "max_ms": round(max(samples) * 1000, 2),
        "mean_ms": round(statistics.fmean(samples) * 1000, 2),
    }


def current_marker(port: int, deadline: float = 30.0, path: str = "/") -> str:
    """The marker ``path`` shows now, asking until the deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        status, body = request(port, path, POLL_TIMEOUT)
        marker = read_marker(body) if status == 200 else None
        if marker is not None:
            return marker
        time.sleep(0.05)
    raise TimeoutError(f"no marker on {path} after {deadline:g} s")


def measure_edits(
    port: int,
    marker_path: Path,
    edits: int,
    sequence: Sequence,
    *,
    rng: random.Random | None = None,
    gap: tuple[float, float] = (0.15, 0.45),
    path: str = "/",
    write: Callable[[Path, str], None] = write_marker,
) -> dict:
    """Edit the marker ``edits`` times; time each edit until ``/`` shows it.

    Between edits ``/`` is asked every 50 ms for a random ``gap`` (seconds,
    uniform between the two bounds, which lie a polling period apart so that
    edits fall at random points of it): those
    answers must all be the fresh marker (``flapped`` counts the others) and
    keep a polling tracker's clock running as a browser would. After an
    edit ``/`` is asked every :data:`POLL` seconds: ``stale`` answers show
    the previous marker, ``wrong`` ones another text, ``refused``,
    ``timeout`` and ``failed`` count the requests that got no answer, and
    ``errors`` the answers other than 200. ``path``: the page asked;
    ``write(marker_path, value)``: how an edit is made.
    """
    rng = rng or random.Random(0)
    counts: Counter[str] = Counter()
    samples: list[float] = []
    timeouts = 0
    previous = current_marker(port, path=path)
    for _ in range(edits):
        _quiet_gap(port, previous, rng.uniform(*gap), counts, path)
        value = marker_value(sequence.next())
        write(marker_path, value)
        written = time.perf_counter()
        elapsed = _wait_fresh(port, value, previous, written, counts, path)
        if elapsed is None:
            timeouts += 1
        else:
            samples.append(elapsed)
        previous = value
    return {
        "edits": edits,
        "samples_ms": [round(s * 1000, 2) for s in samples],
        **summarize(samples),
        "edit_timeouts": timeouts,
        "refused": counts["refused"],
        "failed": counts["failed"] + counts["timeout"],
        "errors": counts["error"],
        "stale": counts["stale"],
        "wrong": counts["wrong"],
        "flapped": counts["flapped"],
        "requests": counts["requests"],
    }


def _wait_fresh(
    port: int, value: str, previous: str, written: float, counts: Counter[str], path: str = "/"
) -> float | None:
    deadline = written + EDIT_DEADLINE
    while True:
        asked = time.perf_counter()
        status, body = request(port, path, POLL_TIMEOUT)
        answered = time.perf_counter()
        counts["requests"] += 1
        if isinstance(status, str):
            counts[status] += 1
        elif status != 200:
            counts["error"] += 1
        else:
            marker = read_marker(body)
            if marker == value:
                return answered - written
            counts["stale" if marker == previous else "wrong"] += 1
        if answered > deadline:
            return None
        time.sleep(max(0.0, asked + POLL - time.perf_counter()))


def _quiet_gap(
    port: int, value: str, seconds: float, counts: Counter[str], path: str = "/"
) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        status, body = request(port, path, POLL_TIMEOUT)
        counts["requests"] += 1
        if isinstance(status, str):
            counts[status] += 1
        elif status != 200:
            counts["error"] += 1
        elif read_marker(body) != value:
            counts["flapped"] += 1
        time.sleep(0.05)


# -- load generation ---------------------------------------------------------------


def python_load(port: int, seconds: float, connections: int, path: str = "/") -> dict:
    """Requests per second from ``connections`` keep-alive connections in threads."""
    stop = threading.Event()
    done = [0] * connections
    failed = [0] * connections

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=POLL_TIMEOUT)
        while not stop.is_set():
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    done[index] += 1
                else:
                    failed[index] += 1
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException):
                failed[index] += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=POLL_TIMEOUT)
        conn.close()

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"load-{i}", daemon=True)
        for i in range(connections)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(POLL_TIMEOUT + 1)
    elapsed = time.perf_counter() - started
    return {
        "tool": "python",
        "rps": round(sum(done) / elapsed, 1),
        "requests": sum(done),
        "failed": sum(failed),
        "seconds": round(elapsed, 2),
    }


def wrk_load(port: int, seconds: float, connections: int, path: str = "/") -> dict:
    """Requests per second measured by ``wrk`` (one thread)."""
    wrk = shutil.which("wrk")
    assert wrk is not None
    duration = max(1, round(seconds))
    result = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            f"http://{HOST}:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    )
    out = result.stdout
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    failed = 0
    for pattern in (r"Non-2xx or 3xx responses:\s*(\d+)", r"Socket errors:.*"):
        match = re.search(pattern, out)
        if match and match.groups():
            failed += int(match.group(1))
        elif match:
            failed += sum(int(n) for n in re.findall(r"\d+", match.group(0)))
    return {
        "tool": "wrk",
        "rps": rps,
        "requests": total,
        "failed": failed,
        "seconds": duration,
    }


def load(port: int, seconds: float, connections: int, tool: str = "auto") -> dict:
    """Load ``/`` for ``seconds``: ``wrk`` when installed (``auto``), else Python."""
    if tool == "wrk" or (tool == "auto" and shutil.which("wrk")):
        return wrk_load(port, seconds, connections)
    return python_load(port, seconds, connections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="load a benchmark server")
    parser.add_argument("command", choices=("load",))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args(argv)
    print(json.dumps(load(args.port, args.seconds, args.connections, args.tool)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
