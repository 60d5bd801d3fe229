"""Body-only view edits: ``scope="functions"`` against the other ways (issue 12).

The latency part edits ``marker.py``, a module-level constant: that edit can
never be patched in place. Here the edit is the one a developer makes most:
the index view returns a different string, nothing else in its module
changes. Before a contender starts, the view's ``return`` line is rewritten
once to hold the marker as a literal; each edit then rewrites that one line
(atomically) with the next marker, so the functions path can be taken.

Two applications: the N=500 Flask one (``views/v000.py``) and the
Flask-SQLAlchemy shape of issue 11 (factory in the package ``__init__``,
blueprints; ``main.py``). memento is served by its command line (waitress,
the watcher, ``-v`` so that its log says which path each reload took).

On the Flask-SQLAlchemy application each server is also asked for its
*first request*: after an edit the log is watched until the reload is done
(the watcher reloads ahead of requests), then one request is timed; the
ordinary requests are those asked a little later, between edits.

Run through ``python bench/run.py --only functions``; the LIMIT of a view
edit runs from here in a fresh interpreter::

    python bench/viewedit.py limit --app-dir DIR --app pkg.wsgi:app --view FILE ...
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import py_compile
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from client import Sequence, measure_edits
from genapp import AppInfo, marker_value, read_marker
from servers import Contender, Server, request, serving

#: memento's log: one line per reload, one per patch (DEBUG), one per fallback (DEBUG).
RELOADED = re.compile(r"reloaded (\d+) modules in ([\d.]+) ms, generation (\d+)")
PATCHED = re.compile(r"patched (.*) in place")
FALLBACK = re.compile(r"scope (?:functions|dependents): (.*)")


@dataclass(frozen=True)
class ViewEdit:
    """The index view's ``return`` line, rewritten with each marker."""

    path: Path
    line: str  # a format with {value!r}: the new line, indented

    def setup(self, value: str) -> None:
        """Put the marker in the view as a literal (before a server starts)."""
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        matches = [i for i, line in enumerate(lines) if "MARKER=" in line and "return" in line]
        if len(matches) != 1:
            raise RuntimeError(f"{self.path}: expected one return line with MARKER=")
        lines[matches[0]] = self.line.format(value=value) + "\n"
        self.path.write_text("".join(lines), encoding="utf-8")
        py_compile.compile(str(self.path), doraise=True)
        importlib.invalidate_caches()

    def write(self, _marker_path: Path, value: str) -> None:
        """Rewrite the return line atomically; nothing else of the module changes."""
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        index = next(i for i, line in enumerate(lines) if "MARKER=" in line and "return" in line)
        lines[index] = self.line.format(value=value) + "\n"
        fd, temp = tempfile.mkstemp(prefix=".view-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write("".join(lines))
            os.replace(temp, self.path)
        except BaseException:
            if os.path.exists(temp):
                os.remove(temp)
            raise


def view_edit(app: AppInfo) -> ViewEdit:
    """The body-only edit of ``app``'s index view (genapp's flask or SQLA flavour)."""
    pkg = Path(app.marker).parent
    if app.flavour == "flask":
        return ViewEdit(
            pkg / "views" / "v000.py",
            '    return render("home", "<p>MARKER=" + {value!r} + ";</p>", footer=TITLE)',
        )
    return ViewEdit(
        pkg / "main.py",
        '    return "<p>MARKER=%s;</p><p>%d posts</p>" % ({value!r}, len(posts))',
    )


@dataclass(frozen=True)
class CliContender(Contender):
    """memento's command line: ``memento --scope SCOPE -v RESOLVER`` (waitress,
    8 threads, the watcher: its defaults otherwise)."""

    @property
    def name(self) -> str:
        return f"memento:cli/{self.scope}/watch"

    def command(self, statement: str, root: str, port: int) -> list[str]:
        return [
            sys.executable, "-m", "memento", "--scope", self.scope, "-v",
            "--host", "127.0.0.1", "--port", str(port), "--threads", "8",
            "--app-dir", root, statement,
        ]  # fmt: skip


@dataclass(frozen=True)
class HmrContender(Contender):
    """hmr (Python 3.12+): ``hmr bench/hmrserve.py RESOLVER PORT`` runs the
    modules that changed and those that depend on them again, in process."""

    kind: str = "hmr"

    @property
    def name(self) -> str:
        return "hmr"

    def command(self, statement: str, root: str, port: int) -> list[str]:
        entry = Path(__file__).resolve().parent / "hmrserve.py"
        return [sys.executable, "-m", "reactivity.hmr", str(entry), statement, str(port)]


def has_hmr() -> bool:
    try:
        return importlib.util.find_spec("reactivity.hmr") is not None
    except ImportError:
        return False


def contenders(flavour: str) -> list[Contender]:
    """memento's command line in each scope, then the peers (N=500 Flask app
    only; hmr when installed)."""
    cli = [CliContender("memento", scope=scope) for scope in ("all", "dependents", "functions")]
    if flavour != "flask":
        return cli
    return [
        *cli,
        Contender("memento", "mori", "functions", True, 0.0),
        *([HmrContender()] if has_hmr() else []),
        Contender("hupper"),
        Contender("werkzeug"),
        Contender("gunicorn"),
    ]


def log_summary(text: str) -> dict:
    """Reloads, patches and fallbacks as memento's log tells them."""
    reloads = RELOADED.findall(text)
    record: dict = {}
    if reloads:
        record["forgotten_median"] = statistics.median(int(n) for n, _, _ in reloads)
        record["server_reload_median_ms"] = statistics.median(float(ms) for _, ms, _ in reloads)
        record["reloads"] = len(reloads)
    if "DEBUG" in text:  # -v: memento says what it patched
        record["patched"] = len(PATCHED.findall(text))
    fallbacks = FALLBACK.findall(text)
    if fallbacks:
        record["fallbacks"] = fallbacks[:5]
    if reloads:  # a reload that imported no module patched in place
        in_place = sum(1 for n, _, _ in reloads if n == "0")
        record["in_place"] = in_place
        done = len(reloads) == in_place
        record["path"] = "functions" if done else "mixed" if in_place else "re-import"
    return record


def run_view_edits(
    contender: Contender,
    app: AppInfo,
    edit: ViewEdit,
    log_path: Path,
    *,
    edits: int,
    sequence: Sequence,
    rng: random.Random,
    pythonpath: str | None,
    first_requests: int = 0,
) -> dict:
    """Serve ``app``; time ``edits`` view edits save → fresh; then, when
    ``first_requests``, that many more edits timing the first request after
    each reload against the ordinary ones."""
    edit.setup(marker_value(sequence.next()))
    with serving(contender, app.statement, app.root, log_path, pythonpath=pythonpath) as (
        server,
        startup,
    ):
        record = measure_edits(
            server.port,
            edit.path,
            edits,
            sequence,
            rng=rng,
            gap=contender.gap,
            write=edit.write,
        )
        record["startup_s"] = round(startup, 3)
        if first_requests:
            record["first_request"] = first_request(
                server, edit, first_requests, sequence, log_path, contender.gap
            )
    record.update(log_summary(log_path.read_text(encoding="utf-8", errors="replace")))
    return record


def first_request(
    server: Server,
    edit: ViewEdit,
    count: int,
    sequence: Sequence,
    log_path: Path,
    gap: tuple[float, float],
) -> dict:
    """The first request served by each new generation against ordinary requests.

    After each edit the server's log is watched (every 2 ms) until a new
    generation is announced; then ``/`` is asked once and timed. A second
    or so later five ordinary requests are timed. Restarting servers never
    announce: for them the first request is the first fresh answer.
    """
    firsts, ordinary, missed = [], [], 0
    for _ in range(count):
        value = marker_value(sequence.next())
        seen = len(RELOADED.findall(_read(log_path)))
        edit.write(edit.path, value)
        deadline = time.monotonic() + 5.0
        while len(RELOADED.findall(_read(log_path))) == seen and time.monotonic() < deadline:
            time.sleep(0.002)
        elapsed, body = _timed(server.port)
        if read_marker(body) != value:
            missed += 1  # not reloaded yet: the first request paid for the reload too
            _wait_for(server.port, value)
        else:
            firsts.append(elapsed)
        time.sleep(sum(gap))
        for _ in range(5):
            elapsed, body = _timed(server.port)
            ordinary.append(elapsed)
            time.sleep(0.02)
    first_ms = statistics.median(firsts) * 1000 if firsts else None
    ordinary_ms = statistics.median(ordinary) * 1000
    return {
        "first_ms": round(first_ms, 2) if first_ms is not None else None,
        "ordinary_ms": round(ordinary_ms, 2),
        "ratio": round(first_ms / ordinary_ms, 3) if first_ms is not None else None,
        "first_samples_ms": [round(s * 1000, 2) for s in firsts],
        "ordinary_samples_ms": [round(s * 1000, 2) for s in ordinary],
        "missed": missed,
    }


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _timed(port: int) -> tuple[float, str]:
    started = time.perf_counter()
    status, body = request(port)
    return time.perf_counter() - started, body if status == 200 else ""


def _wait_for(port: int, value: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        status, body = request(port)
        if status == 200 and read_marker(body) == value:
            return
        time.sleep(0.005)


# -- LIMIT of a view edit, in a fresh interpreter ------------------------------------


def limit(args: argparse.Namespace) -> dict:
    """probes.py's LIMIT (forget the package, import it again, answer ``/``
    with a direct call), the edit being the view's."""
    import probes

    edit = ViewEdit(Path(args.view), args.line)
    return probes.limit(args, edit.path, edit.write)


def limit_command(app: AppInfo, edit: ViewEdit, edits: int, seq: int) -> list[str]:
    return [
        sys.executable, str(Path(__file__).resolve()), "limit", "--app-dir", app.root,
        "--app", app.statement, "--view", str(edit.path), "--line", edit.line,
        "--edits", str(edits), "--seq", str(seq),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LIMIT of a body-only view edit")
    parser.add_argument("probe", choices=("limit",))
    parser.add_argument("--app-dir", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--view", required=True)
    parser.add_argument("--line", required=True)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--seq", type=int, default=1)
    args = parser.parse_args(argv)
    sys.path.insert(0, args.app_dir)
    print(json.dumps(limit(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
