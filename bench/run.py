"""Run the memento benchmarks and write results.json, results.md and results.png.

::

    python bench/run.py --venv bench/.venv            # everything, peers installed
    python bench/run.py --venv bench/.venv --quick    # smoke run: N=50, 3 edits
    python bench/run.py --only latency,cpu --sizes 500 --flavours plain

Parts: ``latency`` (edit→fresh against LIMIT and the restarting peers),
``idle`` (throughput with and without memento), ``memory`` (RSS growth over
reloads), ``cpu`` (idle CPU of a 10,000-file tracker), ``profile`` (cProfile
of one reload), ``django`` (view and template edits of the polls project
against ``manage.py runserver``), ``functions`` (body-only view edits:
``scope="functions"`` against the other scopes, LIMIT and the peers).
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE)] if str(HERE) not in sys.path else []

import djangoapp  # noqa: E402
import viewedit  # noqa: E402
from client import Sequence, load, measure_edits, summarize  # noqa: E402
from genapp import SQLA, AppInfo, generate, generate_sqla, make_tree, marker_value  # noqa: E402
from report import write_reports  # noqa: E402
from servers import (  # noqa: E402
    Contender,
    Server,
    cpu_ticks,
    free_port,
    request,
    server_env,
    serving,
)

PARTS = ("latency", "idle", "memory", "cpu", "profile", "django", "functions", "ahead")
PEERS = ("flask", "hupper", "werkzeug", "gunicorn", "waitress", "webtest", "matplotlib", "Django",
         "django-watchfiles", "flask-sqlalchemy", "flask-login",
         'hmr; python_version >= "3.12"')  # fmt: skip
VERSIONED = ("memento", "waitress", "watchfiles", *PEERS[:4], "Django", "django-watchfiles")
RELOADED = re.compile(r"reloaded (\d+) modules in ([\d.]+) ms")


def log(message: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


# -- the scratch virtualenv --------------------------------------------------------


def in_venv(venv: Path) -> bool:
    return Path(sys.prefix).resolve() == venv.resolve()


def bootstrap(venv: Path, argv: list[str]) -> None:
    """Create ``venv``, install memento and the peers into it, re-run there."""
    python = venv / "bin" / "python"
    if not python.exists():
        log(f"creating the virtualenv {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wanted = [f"{REPO}[serve,watch]", *PEERS]
    stamp = venv / ".bench-requirements"
    if not stamp.exists() or stamp.read_text() != "\n".join(wanted):
        log("installing memento (editable) and " + ", ".join(PEERS))
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "-e", wanted[0], *wanted[1:]], check=True)
        stamp.write_text("\n".join(wanted))
    args = _without_venv(argv)
    log(f"running in {venv}")
    os.execv(str(python), [str(python), str(HERE / "run.py"), *args])


def _without_venv(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--venv":
            skip = True
        elif not arg.startswith("--venv="):
            out.append(arg)
    return out


# -- configuration -----------------------------------------------------------------


class Config:
    """What to run, how long, and where things go."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.quick = args.quick
        self.parts = [p for p in args.only.split(",") if p] if args.only else list(PARTS)
        unknown = set(self.parts) - set(PARTS)
        if unknown:
            raise SystemExit(f"--only: unknown part {sorted(unknown)[0]!r}")
        self.sizes = _ints(args.sizes) if args.sizes else ([50] if args.quick else [50, 500])
        self.flavours = args.flavours.split(",") if args.flavours else ["plain", "flask"]
        self.edits = args.edits or (3 if args.quick else 10)
        self.contenders = args.contenders
        self.idle_seconds = 2.0 if args.quick else 3.0
        self.idle_rounds = 1 if args.quick else 5
        self.cpu_window = 3.0 if args.quick else 10.0
        self.tree_files = 10_000
        self.memory_reloads = (10, 30) if args.quick else (50, 300)
        self.work = Path(args.work) if args.work else HERE / "work"
        self.out = Path(args.out) if args.out else (self.work / "quick" if args.quick else HERE)
        self.logs = self.work / "logs"
        self.live = args.live
        self.pythonpath: str | None = None  # where the measured copy of memento is
        self.sequence = Sequence()
        self.rng = random.Random(3)

    def reserve(self, count: int) -> int:
        """The first of ``count`` marker numbers handed to a probe."""
        first = self.sequence.value
        self.sequence.value += count
        return first


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def app_for(config: Config, flavour: str, n: int) -> AppInfo:
    """Generate (again) the application of this flavour and size, marker reset."""
    return generate(config.work / "apps" / f"{flavour}-{n}", f"app_{flavour}_{n}", n, flavour)


def latency_contenders(flavour: str) -> list[Contender]:
    contenders = [
        Contender("memento", policy, scope, events, 0.0)
        for policy in ("mori", "assassin")
        for scope in ("all", "dependents")
        for events in (False, True)
    ]
    if flavour == "plain":  # the default interval, for one flavour
        contenders.insert(1, Contender("memento", "mori", "all", False, 0.3))
    contenders += [Contender("hupper"), Contender("werkzeug"), Contender("gunicorn")]
    return contenders


def selected(config: Config, name: str) -> bool:
    return not config.contenders or any(s in name for s in config.contenders.split(","))


# -- parts -------------------------------------------------------------------------


def part_latency(config: Config, results: dict, save: Callable[[], None]) -> None:
    section = results.setdefault("latency", {})
    for flavour in config.flavours:
        for n in config.sizes:
            app = app_for(config, flavour, n)
            key = f"{flavour}-{n}"
            entry = section.setdefault(key, {})
            entry["modules"] = app.modules
            entry["dependents"] = len(app.dependents)
            limits: list[dict] = []
            if selected(config, "LIMIT"):
                log(f"latency {key}: LIMIT (before)")
                limits.append(guarded(lambda app=app: probe_limit(config, app)))
                entry["LIMIT"] = merge_limits(limits)
                _say(limits[-1])
            for contender in latency_contenders(flavour):
                if not selected(config, contender.name):
                    continue
                log(f"latency {key}: {contender.name}")
                entry[contender.name] = guarded(
                    lambda c=contender, app=app, key=key: run_latency(config, c, app, key)
                )
                _say(entry[contender.name])
                save()
            if limits:
                log(f"latency {key}: LIMIT (after)")
                limits.append(guarded(lambda app=app: probe_limit(config, app)))
                entry["LIMIT"] = merge_limits(limits)
                _say(limits[-1])
            save()


def merge_limits(runs: list[dict]) -> dict:
    """LIMIT measured before and after the contenders of one application, as one
    record: the load of the machine may differ between the two moments."""
    good = [run for run in runs if "error" not in run]
    if not good:
        return runs[-1]
    samples = [sample / 1000 for run in good for sample in run["samples_ms"]]
    merged = dict(good[0])
    merged.update(summarize(samples))
    merged["samples_ms"] = [round(s * 1000, 2) for s in samples]
    merged["edits"] = len(samples)
    merged["import_median_ms"] = statistics.median(run["import_median_ms"] for run in good)
    merged["run_medians_ms"] = [run["median_ms"] for run in good]
    return merged


def _say(record: dict) -> None:
    if "error" in record:
        log(f"  error: {record['error'][:300]}")
    else:
        bad = {
            k: record[k]
            for k in (
                "refused",
                "failed",
                "errors",
                "stale",
                "wrong",
                "flapped",
                "edit_timeouts",
            )
            if record.get(k)
        }
        log(
            f"  median {record['median_ms']} ms (min {record['min_ms']}, "
            f"max {record['max_ms']}) {bad or ''}"
        )


def probe_limit(config: Config, app: AppInfo) -> dict:
    seq = config.reserve(config.edits)
    arguments = ["limit", "--edits", str(config.edits), "--seq", str(seq)]
    return run_probe(arguments, app, config.pythonpath)


def run_probe(
    arguments: list[str], app: AppInfo, pythonpath: str | None, timeout: float = 300.0
) -> dict:
    """Run ``probes.py`` in a fresh interpreter; its last output line is the result."""
    command = [sys.executable, str(HERE / "probes.py"), *arguments]
    command += ["--app-dir", app.root, "--app", app.statement]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=app.root,
        env=_probe_env(pythonpath),
    )
    if result.returncode != 0:
        raise RuntimeError(f"probe exit {result.returncode}: {result.stderr.strip()[-1500:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _probe_env(pythonpath: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def run_latency(config: Config, contender: Contender, app: AppInfo, key: str) -> dict:
    log_path = config.logs / f"latency-{key}-{_slug(contender.name)}.log"
    with serving(contender, app.statement, app.root, log_path, pythonpath=config.pythonpath) as (
        server,
        startup,
    ):
        record = measure_edits(
            server.port,
            app.marker_path,
            config.edits,
            config.sequence,
            rng=config.rng,
            gap=contender.gap,
        )
        record["startup_s"] = round(startup, 3)
    record.update(_reload_lines(log_path))
    return record


def _reload_lines(log_path: Path) -> dict:
    """What memento's log says about its reloads: modules forgotten and reload time."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    found = RELOADED.findall(text)
    if not found:
        return {}
    return {
        "forgotten_median": statistics.median(int(n) for n, _ in found),
        "server_reload_median_ms": statistics.median(float(ms) for _, ms in found),
    }


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name)


def part_idle(config: Config, results: dict, save: Callable[[], None]) -> None:
    n = 500 if 500 in config.sizes or not config.quick else max(config.sizes)
    app = app_for(config, "plain", n)
    contenders = [
        Contender("bare"),
        Contender("memento", "mori", "all", False, 0.3),
        Contender("memento", "mori", "all", True, 0.3),
        Contender("memento", "mori", "all", False, 0.0),
    ]
    section = results["idle"] = {
        "app": f"plain-{n}",
        "seconds": config.idle_seconds,
        "rounds": config.idle_rounds,
        "runs": {},
    }
    for round_ in range(config.idle_rounds):
        # Every other round in reverse order, so that drift favours nobody.
        for contender in contenders if round_ % 2 == 0 else contenders[::-1]:
            log(f"idle round {round_ + 1}: {contender.name}")
            record = guarded(lambda c=contender: run_idle(config, c, app))
            record["round"] = round_
            section["runs"].setdefault(contender.name, []).append(record)
            if "error" in record:
                log(f"  error: {record['error'][:300]}")
            else:
                log(f"  {record['rps']} requests/s ({record['tool']}, {record['failed']} failed)")
        save()
    section["median_rps"] = {
        name: statistics.median(r["rps"] for r in runs if "rps" in r)
        for name, runs in section["runs"].items()
        if any("rps" in r for r in runs)
    }
    section["paired_ratio"] = paired_ratios(section["runs"])
    section["in_process"] = {}
    for contender in contenders[1:]:
        log(f"idle in process: {contender.name}")
        section["in_process"][contender.name] = record = guarded(
            lambda c=contender: run_probe(
                ["overhead", "--interval", str(c.interval), "--events", str(int(c.events))],
                app,
                config.pythonpath,
            )
        )
        if "error" not in record:
            log(f"  {record['bare_us']} µs bare, {record['wrapped_us']} µs wrapped")
    save()


def paired_ratios(runs: dict[str, list[dict]]) -> dict[str, float]:
    """Median over the rounds of each server's rps ÷ the bare server's in that round."""
    bare = {r["round"]: r["rps"] for r in runs.get("bare", []) if "rps" in r}
    ratios = {}
    for name, records in runs.items():
        paired = [
            r["rps"] / bare[r["round"]] for r in records if "rps" in r and bare.get(r["round"])
        ]
        if name != "bare" and paired:
            ratios[name] = round(statistics.median(paired), 3)
    return ratios


def run_idle(config: Config, contender: Contender, app: AppInfo) -> dict:
    log_path = config.logs / f"idle-{_slug(contender.name)}.log"
    with serving(contender, app.statement, app.root, log_path, pythonpath=config.pythonpath) as (
        server,
        _startup,
    ):
        load(server.port, 0.5, 8)  # warm-up
        record = load(server.port, config.idle_seconds, 8)
        status, _ = request(server.port)
        record["alive_after"] = status == 200
    return record


def part_memory(config: Config, results: dict, save: Callable[[], None]) -> None:
    section = results.setdefault("memory", {})
    first, last = config.memory_reloads
    runs = (
        ("plain", "none"),
        ("plain", "mori"),
        ("plain", "assassin"),
        ("flask", "none"),
        ("flask", "mori"),
        (SQLA, "none"),
        (SQLA, "mori"),
        (SQLA, "assassin"),
    )
    for flavour, policy in runs:
        if flavour not in config.flavours and not (flavour == SQLA and "flask" in config.flavours):
            continue
        if flavour == SQLA:  # the issue 11 application: library registries, a database
            app = generate_sqla(config.work / "apps" / SQLA, "app_sqla")
            name = f"{SQLA} {policy}"
        else:
            app = app_for(config, flavour, 50)
            name = f"{flavour}-50 {policy}"
        log(f"memory {name}: {first} and {last} reloads")
        seq = config.reserve(last + 1)
        section[name] = guarded(
            lambda app=app, policy=policy, seq=seq: run_probe(
                [
                    "memory",
                    "--policy",
                    policy,
                    "--reloads",
                    f"{first},{last}",
                    "--seq",
                    str(seq),
                ],
                app,
                config.pythonpath,
            )
        )
        record = section[name]
        log(
            f"  {record.get('rss_mb')} growth {record.get('growth_mb')} MB, "
            f"{record.get('fd_growth')} fds, {record.get('generations_alive')} alive"
            if "error" not in record
            else f"  error: {record['error'][:300]}"
        )
        save()


def part_cpu(config: Config, results: dict, save: Callable[[], None]) -> None:
    tree = make_tree(config.work / "tree", config.tree_files)
    app = app_for(config, "plain", 50)
    watch = (str(tree),)
    contenders = [
        Contender("bare"),
        Contender("memento", "mori", "all", False, 0.3, watch),
        Contender("memento", "mori", "all", True, 0.3, watch),
        Contender("hupper", watch=watch),
        Contender("werkzeug", watch=watch),
    ]
    section = results["cpu"] = {
        "files": config.tree_files,
        "window_s": config.cpu_window,
        "runs": {},
    }
    for contender in contenders:
        if not selected(config, contender.name) and contender.kind != "bare":
            continue
        log(f"cpu: {contender.name}")
        section["runs"][contender.name] = record = guarded(
            lambda c=contender: run_cpu(config, c, app)
        )
        if "error" in record:
            log(f"  error: {record['error'][:300]}")
        else:
            log(f"  idle {record['idle_pct']} %, 1 request/s {record['rps1_pct']} %")
        save()


def run_cpu(config: Config, contender: Contender, app: AppInfo) -> dict:
    log_path = config.logs / f"cpu-{_slug(contender.name)}.log"
    with serving(
        contender,
        app.statement,
        app.root,
        log_path,
        timeout=120,
        pythonpath=config.pythonpath,
    ) as (
        server,
        _,
    ):
        time.sleep(2.0)  # first scans, watcher set-up
        idle = cpu_window(server, config.cpu_window, requests=False)
        busy = cpu_window(server, config.cpu_window, requests=True)
    return {
        "idle_pct": idle["pct"],
        "rps1_pct": busy["pct"],
        "processes": idle["processes"],
        "failed": busy["failed"],
    }


def cpu_window(server: Server, seconds: float, *, requests: bool) -> dict:
    """Percent of one core the server's processes used over ``seconds``."""
    pids = server.group()
    before = cpu_ticks(pids)
    started = time.perf_counter()
    failed = 0
    stop = threading.Event()

    def ask() -> None:
        nonlocal failed
        while not stop.wait(1.0):
            status, _ = request(server.port)
            failed += status != 200

    asker = threading.Thread(target=ask, name="cpu-asker", daemon=True)
    if requests:
        asker.start()
    time.sleep(seconds)
    stop.set()
    if requests:
        asker.join(10)
    after = cpu_ticks(pids)
    elapsed = time.perf_counter() - started
    ticks = sum(after[pid] - before[pid] for pid in after if pid in before)
    pct = ticks / os.sysconf("SC_CLK_TCK") / elapsed * 100
    return {"pct": round(pct, 3), "processes": len(after), "failed": failed}


def part_profile(config: Config, results: dict, save: Callable[[], None]) -> None:
    section = results.setdefault("profile", {})
    n = max(config.sizes)
    for flavour in config.flavours:
        app = app_for(config, flavour, n)
        for policy, scope in (("mori", "all"), ("assassin", "dependents")):
            name = f"{flavour}-{n} {policy}/{scope}"
            log(f"profile {name}")
            dump = config.work / f"profile-{flavour}-{n}-{policy}-{scope}.txt"
            seq = config.reserve(2)
            section[name] = record = guarded(
                lambda app=app, policy=policy, scope=scope, dump=dump, seq=seq: run_probe(
                    [
                        "profile",
                        "--policy",
                        policy,
                        "--scope",
                        scope,
                        "--seq",
                        str(seq),
                        "--dump",
                        str(dump),
                    ],
                    app,
                    config.pythonpath,
                )
            )
            if "error" in record:
                log(f"  error: {record['error'][:300]}")
            else:
                log(f"  reload {record['reload_ms']} ms, {record['forgotten']} modules")
            save()


def part_ahead(config: Config, results: dict, save: Callable[[], None]) -> None:
    """With the watcher, a lone save → the reload starting (no request made),
    on the N=500 plain app; and save → fresh of a marker edit on the package
    factory layout of the Flask-SQLAlchemy app, per scope. Per Python version."""
    version = "{}.{}".format(*sys.version_info[:2])
    entry = results.setdefault("ahead", {})[version] = {}
    n = max(config.sizes)
    app = app_for(config, "plain", n)
    log(f"ahead {version}: save → reload start, plain-{n}")
    seq = config.reserve(config.edits)
    arguments = ["detect", "--edits", str(config.edits), "--seq", str(seq)]
    record = entry[f"detect plain-{n}"] = guarded(
        lambda: run_probe(arguments, app, config.pythonpath)
    )
    log(f"  {record.get('start_median_ms')} ms median (max {record.get('start_max_ms')})")
    save()
    factory = generate_sqla(config.work / "apps" / f"{SQLA}-factory", "app_sqla_factory",
                            extensions=True)  # fmt: skip
    for scope in ("all", "dependents"):
        log(f"ahead {version}: package factory, scope {scope}")
        seq = config.reserve(config.edits + 1)
        arguments = ["edits", "--scope", scope, "--edits", str(config.edits), "--seq", str(seq)]
        record = entry[f"factory {scope}"] = guarded(
            lambda arguments=arguments: run_probe(arguments, factory, config.pythonpath)
        )
        log(f"  {record.get('median_ms')} ms, {record.get('forgotten_median')} forgotten"
            f" of {record.get('owned')}")  # fmt: skip
        save()


def part_django(config: Config, results: dict, save: Callable[[], None]) -> None:
    """Save → fresh answer of a view edit and a template edit of the polls
    project, memento against ``manage.py runserver``; see djangoapp.py."""
    section = results["django"] = {"project": "examples/django_project", "edits": {}}
    for contender in djangoapp.CONTENDERS:
        if not selected(config, contender.name):
            continue
        log(f"django: {contender.name}")
        records = guarded(lambda c=contender: run_django(config, c))
        for edit in djangoapp.EDITS:
            record = records.get(edit, records)
            section["edits"].setdefault(edit, {})[contender.name] = record
            log(f"  {edit} edit:")
            _say(record)
        save()


def part_functions(config: Config, results: dict, save: Callable[[], None]) -> None:
    """Body-only view edits (issue 12) on the N=500 Flask app and the
    Flask-SQLAlchemy shape, per Python version; see viewedit.py."""
    version = "{}.{}".format(*sys.version_info[:2])
    section = results.setdefault("functions", {})
    entries = section[version] = {}
    n = max(config.sizes)
    apps = [app_for(config, "flask", n)] if "flask" in config.flavours else []
    apps.append(generate_sqla(config.work / "apps" / f"{SQLA}-view", "app_sqla_view"))
    for app in apps:
        key = f"flask-{n}" if app.flavour == "flask" else SQLA
        edit = viewedit.view_edit(app)
        view = str(edit.path.relative_to(app.root))
        entry = entries[key] = {
            "modules": app.modules,
            "view": view,
            "python": sys.version.split()[0],
        }
        entry["memento_sources"] = fingerprint(Path(config.pythonpath or REPO) / "memento")
        entry["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        limits: list[dict] = []

        def run_limit(app: AppInfo = app, edit: viewedit.ViewEdit = edit) -> dict:
            edit.setup(marker_value(config.reserve(1)))
            seq = config.reserve(config.edits)
            command = viewedit.limit_command(app, edit, config.edits, seq)
            done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                                  cwd=app.root, env=_probe_env(config.pythonpath))  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"limit exit {done.returncode}: {done.stderr.strip()[-1500:]}")
            return json.loads(done.stdout.strip().splitlines()[-1])

        if selected(config, "LIMIT"):
            log(f"functions {version} {key}: LIMIT (before)")
            limits.append(guarded(run_limit))
            entry["LIMIT"] = merge_limits(limits)
            _say(limits[-1])
        for contender in viewedit.contenders(app.flavour):
            if not selected(config, contender.name):
                continue
            log(f"functions {version} {key}: {contender.name}")
            log_path = config.logs / f"functions-{version}-{key}-{_slug(contender.name)}.log"
            entry[contender.name] = record = guarded(
                lambda c=contender, app=app, edit=edit, log_path=log_path: viewedit.run_view_edits(
                    c, app, edit, log_path, edits=config.edits, sequence=config.sequence,
                    rng=config.rng, pythonpath=config.pythonpath,
                    first_requests=config.edits if app.flavour == SQLA else 0,
                )
            )  # fmt: skip
            _say(record)
            if "error" not in record:
                log(f"  path {record.get('path')}, first request {record.get('first_request')}")
            save()
        if limits:
            log(f"functions {version} {key}: LIMIT (after)")
            limits.append(guarded(run_limit))
            entry["LIMIT"] = merge_limits(limits)
            _say(limits[-1])
        save()


def run_django(config: Config, contender: djangoapp.DjangoContender) -> dict:
    """Serve one Django contender; measure each kind of edit on the same server."""
    slug = _slug(contender.name)
    value = marker_value(config.reserve(1))
    project = djangoapp.make_project(config.work / "django" / slug, contender, value)
    log_path = config.logs / f"django-{slug}.log"
    env = server_env(config.pythonpath if contender.is_memento else None)
    port = free_port()
    records: dict = {}
    with Server(contender.command(port), str(project), port, log_path, env) as server:
        startup = server.wait_ready(90, path=djangoapp.EDITS["view"])
        for edit, path in djangoapp.EDITS.items():
            before = len(_read(log_path))
            marker_path, write = djangoapp.writer(project, edit)
            record = measure_edits(
                server.port,
                marker_path,
                config.edits,
                config.sequence,
                rng=config.rng,
                gap=contender.gap,
                path=path,
                write=write,
            )
            record["startup_s"] = round(startup, 3)
            record.update(_reload_summary(_read(log_path)[before:]))
            records[edit] = record
    reloader = djangoapp.reloader_line(_read(log_path))
    for record in records.values():
        record["reloader"] = reloader
    return records


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _reload_summary(text: str) -> dict:
    found = RELOADED.findall(text)
    if not found:
        return {}
    return {
        "forgotten_median": statistics.median(int(n) for n, _ in found),
        "server_reload_median_ms": statistics.median(float(ms) for _, ms in found),
    }


def guarded(run: Callable[[], dict]) -> dict:
    """Run one measurement; a failure becomes ``{"error": ...}``, the rest goes on."""
    try:
        return run()
    except Exception as exc:  # any contender may fail: record it, go on
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return {"error": detail[-2000:]}


# -- main --------------------------------------------------------------------------


def fingerprint(package: Path = REPO / "memento") -> str:
    """A digest of memento's sources: tells whether they changed during a run."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def snapshot_memento(directory: Path) -> Path:
    """Copy memento's sources to ``directory``: the run measures them as they
    were when it started, whatever happens to the checkout meanwhile."""
    if directory.exists():
        shutil.rmtree(directory)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "memento", directory / "memento", ignore=ignore)
    return directory


def measured_memento(pythonpath: str | None) -> str:
    """The file memento is imported from by the servers and probes."""
    result = subprocess.run(
        [sys.executable, "-c", "import memento; print(memento.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_probe_env(pythonpath),
        cwd=str(HERE.parent.parent),
    )
    return result.stdout.strip() or result.stderr.strip()[-300:]


def metadata(config: Config) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions,
        "load_tool": "wrk" if shutil.which("wrk") else "python",
        "memento_sources": fingerprint(),
        "quick": config.quick,
        "edits": config.edits,
        "sizes": config.sizes,
        "flavours": config.flavours,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", help="create/use this virtualenv with the peers, run there")
    parser.add_argument("--only", help=f"comma-separated parts: {','.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=50, 3 edits")
    parser.add_argument("--sizes", help="module counts, e.g. 50,500")
    parser.add_argument("--flavours", help="plain,flask")
    parser.add_argument("--edits", type=int, help="edits per latency contender (default 10)")
    parser.add_argument("--contenders", help="comma-separated substrings of contender names")
    parser.add_argument("--out", help="directory for results.* (default bench/)")
    parser.add_argument(
        "--work",
        help="directory for the generated applications, logs and snapshot (default bench/work;"
        " runs at the same time need their own)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="import memento from the checkout as it is at each start, not from "
        "a copy taken when the run starts",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="only rewrite results.md/png from results.json",
    )
    args = parser.parse_args(argv)
    if args.venv and not in_venv(Path(args.venv)):
        bootstrap(Path(args.venv), argv)
    config = Config(args)
    config.out.mkdir(parents=True, exist_ok=True)
    json_path = config.out / "results.json"
    if args.report:
        write_reports(json.loads(json_path.read_text()), config.out)
        return 0
    results = _previous(json_path, config)
    earlier = results.get("meta", {}).get("part_seconds", {})
    results["meta"] = metadata(config)
    results["meta"]["part_seconds"] = dict(earlier)
    if not config.live:
        config.pythonpath = str(snapshot_memento(config.work / "snapshot"))
    results["meta"]["memento_file"] = measured_memento(config.pythonpath)
    results["meta"]["memento_snapshot"] = not config.live
    log(f"measuring memento from {results['meta']['memento_file']}")

    def save() -> None:
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")

    started = time.perf_counter()
    parts = {
        "latency": part_latency,
        "idle": part_idle,
        "memory": part_memory,
        "cpu": part_cpu,
        "profile": part_profile,
        "django": part_django,
        "ahead": part_ahead,
        "functions": part_functions,
    }
    for name in config.parts:
        part_started = time.perf_counter()
        try:
            parts[name](config, results, save)
        except Exception:
            log(f"part {name} failed:\n{traceback.format_exc()}")
            results.setdefault("errors", {})[name] = traceback.format_exc()[-3000:]
        results["meta"].setdefault("part_seconds", {})[name] = round(
            time.perf_counter() - part_started, 1
        )
        save()
    results["meta"]["total_seconds"] = round(time.perf_counter() - started, 1)
    if fingerprint() != results["meta"]["memento_sources"]:
        results["meta"]["memento_changed_during_run"] = True
        if config.live:
            log("warning: memento's sources changed during the run")
        else:
            log(
                "memento's sources changed during the run; the copy taken at its start was measured"
            )
    write_reports(results, config.out)
    save()
    log(f"wrote {json_path}, results.md and results.png in {config.out}")
    return 0


def _previous(path: Path, config: Config) -> dict:
    """Earlier results to merge into when only some parts run again."""
    if set(config.parts) == set(PARTS) or not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    raise SystemExit(main())
