"""Live refresh latency: save a view, how long until the browser paints the new text.

Serves a copy of the demo application (``examples/hello``) with the command
line, ``memento --live`` (the watcher, when ``watchfiles`` is installed),
opens its page in headless Chromium (Debian's ``chromium``) and edits
``views.py`` again and again. For each edit: the time from the write to the
first animation frame of the page that shows the new text, once its DOM is
ready (the frame that paints it; headless Chromium reports no paint timing
entries), as the browser's clock tells it::

    python bench/live.py                 # 10 edits, prints the median
    python bench/live.py --edits 20 --json bench/work/live.json

Every wait is bounded; the server and the browser are killed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from chromium import Browser, find_browser  # noqa: E402

VIEWS = '''\
GREETING = {greeting!r}


def home() -> str:
    return (
        f"<h1>{{GREETING}}</h1>"
        "<p>Edit <code>examples/hello/hello/views.py</code>, save, and reload this page.</p>"
    )
'''
TARGET_MS = 150.0


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.002)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def start_server(app_dir: Path, extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "memento", "--app-dir", str(app_dir), "--port", "0",
         "--live", *extra, "hello.wsgi:app"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if match is None:
        stop(proc)
        raise RuntimeError(f"the server printed no address: {line!r}")
    return proc, match.group(0)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def measure(edits: int, extra: list[str]) -> list[float]:
    """Milliseconds from each save to the new text painted."""
    browser_path = find_browser()
    if browser_path is None:
        raise SystemExit("no chromium found (apt-get install -y chromium)")
    samples = []
    with tempfile.TemporaryDirectory(prefix="memento-live-") as work:
        app_dir = Path(work) / "hello"
        shutil.copytree(ROOT / "examples" / "hello", app_dir)
        views = app_dir / "hello" / "views.py"
        proc, url = start_server(app_dir, extra)
        try:
            with Browser(browser_path, Path(work) / "profile") as browser:
                browser.time_frames()
                browser.navigate(url)
                wait_for(lambda: "Hello from memento" in browser.text(), 15, "the first page")
                for number in range(1, edits + 1):
                    greeting = f"Edit number {number}"
                    time.sleep(0.4)  # the page's script is back to waiting
                    saved = time.time()
                    views.write_text(VIEWS.format(greeting=greeting), encoding="utf-8")
                    wait_for(lambda g=greeting: g in browser.text(), 10, repr(greeting))
                    seen = time.time()
                    drawn = wait_for(browser.drawn_at, 5, "the new page's first frame")
                    samples.append((drawn - saved) * 1000)
                    print(
                        f"edit {number}: {samples[-1]:.1f} ms"
                        f" (seen by polling the page after {(seen - saved) * 1000:.1f} ms)",
                        flush=True,
                    )
        finally:
            stop(proc)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--json", metavar="PATH", help="also write the samples here")
    parser.add_argument(
        "--server", choices=("waitress", "wsgiref"), default="waitress",
        help="the server the command line runs",
    )
    args = parser.parse_args(argv)
    samples = measure(args.edits, ["--server", args.server])
    median = statistics.median(samples)
    print(
        f"save -> new text painted: median {median:.1f} ms over {len(samples)} edits"
        f" (min {min(samples):.1f}, max {max(samples):.1f}; target <= {TARGET_MS:.0f} ms)"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"samples_ms": samples, "median_ms": median}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
