"""Ratios, targets and the human-readable reports (results.md, results.png)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

FAILURE_KEYS = ("refused", "failed", "errors", "edit_timeouts")
WRONG_KEYS = ("flapped", "wrong")


SQLA_NAME = "flask-sqlalchemy"  # genapp.SQLA


def is_memento(name: str) -> bool:
    return name.startswith("memento:")


def is_peer(name: str) -> bool:
    return name in ("hupper+waitress", "werkzeug", "gunicorn")


def scope_of(name: str) -> str | None:
    return name.split(":", 1)[1].split("/")[1] if is_memento(name) else None


def _median(record: object) -> float | None:
    if isinstance(record, dict) and isinstance(record.get("median_ms"), (int, float)):
        return float(record["median_ms"])
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def contenders(entry: dict) -> dict[str, dict]:
    return {k: v for k, v in entry.items() if isinstance(v, dict)}


def compute_ratios(results: dict) -> dict:
    """memento ÷ LIMIT, ÷ each peer and ÷ the fastest peer; wrapped ÷ bare."""
    ratios: dict = {
        "latency": {},
        "idle": {},
        "django": django_ratios(results),
        "functions": functions_ratios(results),
    }
    for key, entry in results.get("latency", {}).items():
        runs = contenders(entry)
        limit = _median(runs.get("LIMIT"))
        peers = {n: _median(r) for n, r in runs.items() if is_peer(n) and _median(r)}
        fastest = min(peers.items(), key=lambda item: item[1]) if peers else None
        table = {}
        for name, record in runs.items():
            median = _median(record)
            if not is_memento(name) or median is None:
                continue
            table[name] = {
                "vs_limit": _ratio(median, limit),
                "vs_fastest_peer": _ratio(median, fastest[1] if fastest else None),
                "fastest_peer": fastest[0] if fastest else None,
                **{f"vs_{peer}": _ratio(median, value) for peer, value in peers.items()},
            }
        ratios["latency"][key] = table
    idle = results.get("idle", {})
    medians = idle.get("median_rps", {})
    bare = medians.get("bare")
    for name, rps in medians.items():
        if name != "bare":
            # Paired with the bare run of the same round when available.
            ratios["idle"][name] = idle.get("paired_ratio", {}).get(name, _ratio(rps, bare))
    return ratios


def failures(record: dict) -> int:
    return sum(int(record.get(key) or 0) for key in FAILURE_KEYS)


def check_targets(results: dict, ratios: dict) -> list[dict]:
    """One row per target and measurement: value, bound, met or not."""
    rows: list[dict] = []

    def add(target: str, where: str, value: float | None, bound: float, below: bool) -> None:
        ok = None if value is None else (value <= bound if below else value >= bound)
        rows.append({"target": target, "where": where, "value": value, "bound": bound, "ok": ok})

    for key, table in ratios["latency"].items():
        for name, ratio in table.items():
            if scope_of(name) == "all" and "@" not in name:
                add(
                    "scope=all edit→fresh ≤ 1.3 × LIMIT",
                    f"{key} {name}",
                    ratio["vs_limit"],
                    1.3,
                    True,
                )
                add(
                    "scope=all edit→fresh ≤ 0.15 × fastest restart peer",
                    f"{key} {name} (vs {ratio['fastest_peer']})",
                    ratio["vs_fastest_peer"],
                    0.15,
                    True,
                )
    for key, table in ratios["latency"].items():
        if not key.endswith("-500"):
            continue
        for name, ratio in table.items():
            if scope_of(name) == "dependents":
                add(
                    "scope=dependents ≤ 0.1 × LIMIT (N=500 leaf edit)",
                    f"{key} {name}",
                    ratio["vs_limit"],
                    0.1,
                    True,
                )
    for name, ratio in ratios["idle"].items():
        if name.endswith("/poll"):  # interval 0: shown, not a target
            continue
        add("idle throughput ≥ 0.97 × bare", name, ratio, 0.97, False)
    failed = 0
    wrong = 0
    for entry in results.get("latency", {}).values():
        for name, record in contenders(entry).items():
            if is_memento(name) and "error" not in record:
                failed += failures(record)
                wrong += sum(int(record.get(key) or 0) for key in WRONG_KEYS)
    for name, runs in results.get("idle", {}).get("runs", {}).items():
        if is_memento(name):
            failed += sum(int(run.get("failed") or 0) for run in runs)
    add(
        "0 failed requests (memento: refused, failed, non-200, timed out)",
        "latency + idle runs",
        failed,
        0,
        True,
    )
    add("0 stale answers once fresh (memento)", "latency runs", wrong, 0, True)
    rows += django_targets(results, ratios)
    rows += functions_targets(results, ratios)
    for name, record in results.get("memory", {}).items():
        if name.endswith(" none"):  # the baseline without memento
            continue
        if isinstance(record, dict) and "growth_mb" in record:
            add("RSS growth 50→300 reloads < 20 MB", name, record["growth_mb"], 20, True)
        if isinstance(record, dict) and "fd_growth" in record:
            add("open fds growth over 300 reloads ≤ 2", name, record["fd_growth"], 2, True)
    for name, record in results.get("cpu", {}).get("runs", {}).items():
        if not is_memento(name) or "error" in record:
            continue
        bound = 0.5 if name.endswith("/watch") else 2.0
        kind = "watcher" if name.endswith("/watch") else "polling"
        for mode, label in (("idle_pct", "idle"), ("rps1_pct", "1 request/s")):
            add(
                f"idle CPU, 10,000 files, {kind} < {bound} % of a core",
                f"{name} ({label})",
                record[mode],
                bound,
                True,
            )
    return rows


# -- markdown ----------------------------------------------------------------------


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _edit_cells(name: str, record: dict, ratio: dict, vs_peer: str) -> list[object]:
    """Contender, median, min, max, ×LIMIT, ×peer, bad, stale, flap."""
    return [
        name,
        _fmt(record.get("median_ms")),
        _fmt(record.get("min_ms")),
        _fmt(record.get("max_ms")),
        _x(ratio.get("vs_limit")),
        _x(ratio.get(vs_peer)),
        failures(record),
        record.get("stale", 0),
        record.get("flapped", 0),
    ]


def _reload_cells(record: dict) -> list[str]:
    """Modules a reload imported and its time (LIMIT: the re-import)."""
    return [
        _fmt(record.get("forgotten_median", record.get("modules")), 0),
        _fmt(record.get("server_reload_median_ms", record.get("import_median_ms"))),
    ]


def markdown(results: dict, ratios: dict, targets: list[dict]) -> str:
    meta = results.get("meta", {})
    lines = ["# memento benchmark results", ""]
    if meta.get("memento_changed_during_run") and not meta.get("memento_snapshot"):
        lines += ["**memento's sources changed during this run: figures may mix versions.**", ""]
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items() if v)
    lines += [
        f"{meta.get('date', '')} · Python {meta.get('python', '')} · "
        f"{meta.get('cpus', '')} CPUs · {meta.get('platform', '')}",
        "",
        f"{versions}. Load generator: {meta.get('load_tool', '')}. "
        f"{meta.get('edits', '')} edits per latency run"
        + (" (quick run)" if meta.get("quick") else "")
        + ".",
        "",
        f"memento imported from `{meta.get('memento_file', '?')}`, sources digest "
        f"`{meta.get('memento_sources', '?')}`"
        + (" (a copy taken when the run started)." if meta.get("memento_snapshot") else "."),
        "",
        "## Targets",
        "",
        *headline(targets),
        "",
        "| target | where | value | bound | met |",
        "| --- | --- | ---: | ---: | :---: |",
    ]
    for row in targets:
        met = {True: "yes", False: "**no**", None: "–"}[row["ok"]]
        lines.append(
            f"| {row['target']} | {row['where']} | {_fmt(row['value'], 3)} | "
            f"{row['bound']} | {met} |"
        )
    lines += [
        "",
        "## Edit → fresh latency (ms)",
        "",
        "Time from the atomic rewrite of `marker.py` to the first `/` answer "
        "showing the new marker. ×LIMIT and ×peer: memento's median over "
        "LIMIT's and over the fastest restarting peer's. *bad*: refused + failed "
        "+ non-200 + timed-out edits; *stale*: answers with the old marker after "
        "the write; *flap*: stale answers after a fresh one; *fgt*: modules "
        "memento forgot per reload; *reload*: memento's own reload time from its "
        "log (LIMIT: the re-import alone), median.",
        "",
    ]
    for key, entry in results.get("latency", {}).items():
        lines += [
            f"### {key} ({entry.get('modules', '?')} modules, "
            f"{entry.get('dependents', '?')} on the marker's import chain)",
            "",
            "| contender | median | min | max | ×LIMIT | ×peer | bad | stale | "
            "flap | fgt | reload | start s |",
            "| --- " + "| ---: " * 11 + "|",
        ]
        table = ratios["latency"].get(key, {})
        for name, record in contenders(entry).items():
            if "error" in record:
                lines.append(f"| {name} | error: {record['error'][:120]!s} | | | | | | | | | |")
                continue
            ratio = table.get(name, {})
            cells = [
                *_edit_cells(name, record, ratio, "vs_fastest_peer"),
                *_reload_cells(record),
                _fmt(record.get("startup_s"), 2),
            ]
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
        lines.append("")
    lines += django_markdown(results, ratios)
    lines += ahead_markdown(results)
    lines += functions_markdown(results, ratios)
    idle = results.get("idle")
    if idle:
        lines += [
            "## Idle overhead (requests/s)",
            "",
            f"`/` of the {idle.get('app')} app through waitress (8 threads), "
            f"{idle.get('seconds')} s per run, {idle.get('rounds')} rounds "
            "interleaved; ÷ bare: median over the rounds of each run over the bare "
            "run of the same round.",
            "",
            "| server | runs (req/s) | median | ÷ bare | failed |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for name, runs in idle.get("runs", {}).items():
            values = ", ".join(_fmt(r.get("rps"), 0) if "rps" in r else "error" for r in runs)
            failed = sum(int(r.get("failed") or 0) for r in runs)
            lines.append(
                f"| {name} | {values} | "
                f"{_fmt(idle.get('median_rps', {}).get(name), 0)} | "
                f"{_x(ratios['idle'].get(name)) if name != 'bare' else '1.00×'} | "
                f"{failed} |"
            )
        lines.append("")
        in_process = idle.get("in_process", {})
        if in_process:
            lines += [
                "Without a server: microseconds per direct WSGI call of `/`, the "
                "fastest of 20 blocks of 500 calls, bare and through memento; and "
                "calls per second wrapped ÷ bare, from one thread and from 8 threads "
                "at once (the bare call is a few µs, so these ratios magnify the "
                "middleware's cost: compare the two columns, not the target).",
                "",
                "| middleware | bare µs | wrapped µs | overhead µs | ÷ bare, 1 thread "
                "| ÷ bare, 8 threads |",
                "| --- | ---: | ---: | ---: | ---: | ---: |",
            ]
            for name, record in in_process.items():
                if "error" in record:
                    lines.append(f"| {name} | error: {record['error'][:150]} | | | | |")
                    continue
                lines.append(
                    f"| {name} | {record['bare_us']} | {record['wrapped_us']} | "
                    f"{record['overhead_us']} | {_x(record.get('single_ratio'))} | "
                    f"{_x(record.get('threads8_ratio'))} |"
                )
            lines.append("")
    memory = results.get("memory")
    if memory:
        lines += [
            "## Memory (RSS, MB)",
            "",
            "A process serving the N=50 app (and the Flask-SQLAlchemy application "
            "of issue 11: factory, five blueprints, models with a session "
            "listener, Flask-Login, sqlite) under memento, reloads driven by "
            "editing `marker.py` and a direct WSGI call. *none*: the same reloads "
            "without memento (forget the package, import it again), the growth "
            "Python and the application cause by themselves. Growth is measured "
            "from the first to the last checkpoint; the first reloads warm the "
            "allocator up. *fds growth*: open file descriptors, load to last "
            "checkpoint; *User classes alive*: the model class of each "
            "generation not yet garbage (1: only the one serving).",
            "",
            "| app, policy | RSS after load / reloads | growth | per reload | reload median ms "
            "| fds growth | User classes alive |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, record in sorted(memory.items()):
            if "error" in record:
                lines.append(f"| {name} | error: {record['error'][:150]} | | | |")
                continue
            rss = ", ".join(f"{k}: {v}" for k, v in record["rss_mb"].items())
            lines.append(
                f"| {name} | {rss} | {record['growth_mb']} MB | "
                f"{record['growth_per_reload_kb']} kB | "
                f"{record['reload_median_ms']} | {record.get('fd_growth', '')} | "
                f"{record.get('generations_alive', '') if SQLA_NAME in name else ''} |"
            )
        lines.append("")
    cpu = results.get("cpu")
    if cpu:
        runs = cpu.get("runs", {})
        bare = runs.get("bare", {})
        lines += [
            "## Idle CPU (% of one core)",
            "",
            f"Server processes (the whole process group) over "
            f"{cpu.get('window_s')} s, tracking {cpu.get('files')} files; *net*: "
            "minus the bare waitress server in the same mode.",
            "",
            "| server | idle | net | 1 request/s | net |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, record in runs.items():
            if "error" in record:
                lines.append(f"| {name} | error: {record['error'][:150]} | | | |")
                continue
            net_idle = _net(record, bare, "idle_pct")
            net_busy = _net(record, bare, "rps1_pct")
            lines.append(
                f"| {name} | {_fmt(record['idle_pct'], 2)} | {_fmt(net_idle, 2)} "
                f"| {_fmt(record['rps1_pct'], 2)} | {_fmt(net_busy, 2)} |"
            )
        lines.append("")
    profile = results.get("profile")
    if profile:
        lines += ["## Where a reload spends its time (cProfile)", ""]
        for name, record in profile.items():
            if "error" in record:
                lines += [f"### {name}", "", f"error: {record['error'][:300]}", ""]
                continue
            lines += [
                f"### {name}: request {record['request_ms']} ms, reload "
                f"{record['reload_ms']} ms, {record['forgotten']} modules forgotten",
                "",
            ]
            for title, key in (
                ("function (by own time)", "top_tottime"),
                ("memento's functions (by cumulative time)", "memento_cumulative"),
            ):
                lines += [
                    f"| {title} | calls | own ms | cumulative ms |",
                    "| --- | ---: | ---: | ---: |",
                ]
                for row in record.get(key, [])[:10]:
                    lines.append(
                        f"| `{row['function']}` | {row['calls']} | "
                        f"{row['tottime_ms']} | {row['cumtime_ms']} |"
                    )
                lines.append("")
    errors = results.get("errors")
    if errors:
        lines += ["## Parts that failed", ""]
        for name, text in errors.items():
            lines += [f"### {name}", "", "```", text.strip()[-1500:], "```", ""]
    return "\n".join(lines) + "\n"


# -- Django ------------------------------------------------------------------------

#: The runserver contenders memento is compared with, and the bounds per edit.
DJANGO_PEERS = ("runserver", "runserver+watchfiles")
DJANGO_BOUNDS = {"view": 0.1, "template": 0.05}


def django_ratios(results: dict) -> dict:
    """Per edit kind: each memento contender's median ÷ each runserver's."""
    ratios: dict = {}
    for edit, runs in results.get("django", {}).get("edits", {}).items():
        peers = {name: _median(runs.get(name)) for name in DJANGO_PEERS}
        ratios[edit] = {
            name: {f"vs_{peer}": _ratio(_median(record), value) for peer, value in peers.items()}
            for name, record in runs.items()
            if name.startswith("memento")
        }
    return ratios


def django_targets(results: dict, ratios: dict) -> list[dict]:
    rows = []
    for edit, table in ratios.get("django", {}).items():
        bound = DJANGO_BOUNDS.get(edit)
        for name, vs in table.items():
            for peer in DJANGO_PEERS:
                value = vs.get(f"vs_{peer}")
                rows.append({
                    "target": f"Django {edit} edit → fresh ≤ {bound} × runserver",
                    "where": f"{name} vs {peer}",
                    "value": value,
                    "bound": bound,
                    "ok": None if value is None or bound is None else value <= bound,
                })  # fmt: skip
    for edit, runs in results.get("django", {}).get("edits", {}).items():
        for name, record in runs.items():
            if name.startswith("memento") and "error" not in record:
                bad = failures(record)
                rows.append({
                    "target": "Django: 0 refused or failed requests (memento)",
                    "where": f"{name}, {edit} edits",
                    "value": bad,
                    "bound": 0,
                    "ok": bad == 0,
                })  # fmt: skip
    return rows


def ahead_markdown(results: dict) -> list[str]:
    """The ``ahead`` part: save → reload start with the watcher; the package factory."""
    section = results.get("ahead")
    if not section:
        return []
    lines = [
        "## Reload before the request",
        "",
        "With the watcher, the reload starts as soon as a lone save is seen, no request"
        " made (`detect`: median and max of the time from the save to the reload starting;"
        " target ≤ 10 ms). On the Flask-SQLAlchemy application laid out as a package"
        " factory (`extensions.py`, `pkg:create_app()`), save → fresh answer of a marker"
        " edit through memento with direct WSGI calls, and the modules forgotten.",
        "",
        "| Python | measurement | median ms | max ms | forgotten |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for version, entry in sorted(section.items()):
        for name, record in entry.items():
            if "error" in record:
                lines.append(f"| {version} | {name} | error | | |")
            elif "ratio" in record:
                lines.append(
                    f"| {version} | {name}: save → fresh, {_fmt(record.get('ratio'), 2)} × LIMIT"
                    f" ({_fmt(record.get('limit_ms'))} ms) | {_fmt(record.get('median_ms'))} | "
                    f"{_fmt(record.get('max_ms'))} | |"
                )
            elif name.startswith("detect"):
                lines.append(
                    f"| {version} | {name}: save → reload start | "
                    f"{_fmt(record.get('start_median_ms'))} | {_fmt(record.get('start_max_ms'))} |"
                    f" |"
                )
            else:
                lines.append(
                    f"| {version} | {name}: save → fresh | {_fmt(record.get('median_ms'))} | "
                    f"{_fmt(record.get('max_ms'))} | {record.get('forgotten_median')} of "
                    f"{record.get('owned')} |"
                )
    return [*lines, ""]


def django_markdown(results: dict, ratios: dict) -> list[str]:
    django = results.get("django")
    if not django:
        return []
    lines = [
        "## Django: edit → fresh (ms)",
        "",
        f"The polls project ({django.get('project')}), each contender serving its own "
        "copy. *view*: `polls/views.py` rewritten, `/polls/marker/` asked; *template*: "
        "`polls/templates/polls/page.html` rewritten, `/polls/page/` asked. ×runserver: "
        "memento's median over runserver's (StatReloader) and over runserver with "
        "django-watchfiles. *refused*: connections refused while the edit was "
        "waited for; *bad*: refused + failed + non-200 + timed-out edits; *fgt*: "
        "modules memento forgot per reload (median).",
        "",
    ]
    for edit, runs in django.get("edits", {}).items():
        table = ratios.get("django", {}).get(edit, {})
        lines += [
            f"### {edit} edit",
            "",
            "| contender | median | min | max | ×runserver | ×runserver+watchfiles | refused "
            "| bad | stale | fgt | reloader | start s |",
            "| --- " + "| ---: " * 9 + "| --- | ---: |",
        ]
        for name, record in runs.items():
            if "error" in record:
                lines.append(f"| {name} | error: {record['error'][:150]!s} |" + " |" * 10)
                continue
            vs = table.get(name, {})
            cells = [
                name,
                _fmt(record.get("median_ms")),
                _fmt(record.get("min_ms")),
                _fmt(record.get("max_ms")),
                _x(vs.get("vs_runserver")),
                _x(vs.get("vs_runserver+watchfiles")),
                record.get("refused", 0),
                failures(record),
                record.get("stale", 0),
                _fmt(record.get("forgotten_median"), 0),
                record.get("reloader") or ("memento" if name.startswith("memento") else "–"),
                _fmt(record.get("startup_s"), 2),
            ]
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
        lines.append("")
    return lines


# -- body-only view edits, scope="functions" (issue 12) ------------------------------

#: What the functions part's contenders are compared with besides LIMIT.
FUNCTIONS_PEERS = ("hmr", "gunicorn")
HMR_NOTE = (
    "hmr (the issue's in-process peer, `hmr bench/hmrserve.py`: waitress in a thread, "
    "the application handed over after each of hmr's reactive reruns of the changed "
    "module and its dependents) installs on Python 3.12 only: on 3.11 `pip install "
    "hmr` ends with `No matching distribution found for hmr`, so there the ≤ 0.35 × "
    "hmr target has no value."
)


def functions_ratios(results: dict) -> dict:
    """Per Python version and application: memento ÷ LIMIT and ÷ each peer."""
    ratios: dict = {}
    for version, apps in results.get("functions", {}).items():
        for key, entry in apps.items():
            runs = contenders(entry)
            limit = _median(runs.get("LIMIT"))
            peers = {n: _median(r) for n, r in runs.items() if is_peer(n) or n == "hmr"}
            ratios.setdefault(version, {})[key] = {
                name: {
                    "vs_limit": _ratio(_median(record), limit),
                    **{f"vs_{peer}": _ratio(_median(record), v) for peer, v in peers.items()},
                }
                for name, record in runs.items()
                if is_memento(name) and _median(record) is not None
            }
    return ratios


def functions_targets(results: dict, ratios: dict) -> list[dict]:
    rows: list[dict] = []

    def add(target: str, where: str, value: float | None, bound: float) -> None:
        ok = None if value is None else value <= bound
        rows.append({"target": target, "where": where, "value": value, "bound": bound, "ok": ok})

    bad = stale = 0
    for version, apps in results.get("functions", {}).items():
        for key, entry in apps.items():
            table = ratios.get("functions", {}).get(version, {}).get(key, {})
            for name, record in contenders(entry).items():
                if not is_memento(name) or "error" in record:
                    continue
                where = f"{version} {key} {name}"
                bad += failures(record)
                stale += sum(int(record.get(k) or 0) for k in WRONG_KEYS)
                if scope_of(name) == "functions":
                    add(
                        "scope=functions: view-body edits re-imported, not patched",
                        where,
                        int(record.get("reloads") or 0) - int(record.get("in_place") or 0),
                        0,
                    )
                if key == SQLA_NAME:
                    add(
                        "real app (Flask-SQLAlchemy) view-body edit → fresh ≤ 30 ms median",
                        where,
                        record.get("median_ms"),
                        30,
                    )
                    first = record.get("first_request", {})
                    add(
                        "real app: first request after a reload ≤ 1.5 × an ordinary one",
                        where,
                        first.get("ratio"),
                        1.5,
                    )
                elif scope_of(name) == "functions" and name.startswith("memento:cli"):
                    ratio = table.get(name, {})
                    add(
                        "scope=functions view-body edit ≤ 0.1 × gunicorn --reload (N=500 Flask)",
                        where,
                        ratio.get("vs_gunicorn"),
                        0.1,
                    )
                    add(
                        "scope=functions view-body edit ≤ 0.35 × hmr (N=500 Flask)",
                        where + ("" if ratio.get("vs_hmr") else " (hmr not measured)"),
                        ratio.get("vs_hmr"),
                        0.35,
                    )
    if results.get("functions"):
        add("view-body edits: 0 failed requests (memento)", "functions runs", bad, 0)
        add("view-body edits: 0 stale answers once fresh (memento)", "functions runs", stale, 0)
    return rows


def functions_markdown(results: dict, ratios: dict) -> list[str]:
    functions = results.get("functions")
    if not functions:
        return []
    lines = [
        '## Body-only view edit → fresh (ms), scope="functions"',
        "",
        "The index view's `return` line rewritten (atomically) with the next "
        "marker, nothing else in its module changed, then `/` asked every 5 ms "
        "until it shows it (bench/viewedit.py). `memento:cli/SCOPE/watch`: "
        "`memento --scope SCOPE -v` (waitress, the watcher); "
        '`memento:mori/functions/watch`: `Mori(scope="functions", events=True, '
        "interval=0)` under waitress; LIMIT: forget the package, import it "
        "again, direct WSGI call. *path*: `functions` when every reload "
        "imported no module (patched in place; *patched*: memento's "
        "`patched ... in place` DEBUG lines), `re-import` otherwise; *reloads*: "
        "reloads in memento's log; *fgt*: modules a reload imported (median); "
        "*reload*: memento's own reload time. Flask-SQLAlchemy: after the "
        "timed edits, as many more edits, each followed by waiting for the "
        "reload in the log and one timed request (*first*), then five ordinary "
        "requests a moment later (*ordinary*); medians, and first ÷ ordinary.",
        "",
        HMR_NOTE,
        "",
    ]
    for version, apps in functions.items():
        for key, entry in apps.items():
            table = ratios.get("functions", {}).get(version, {}).get(key, {})
            lines += [
                f"### Python {entry.get('python', version)}, {key} "
                f"({entry.get('modules', '?')} modules, edit of `{entry.get('view', '?')}`)",
                "",
                f"{entry.get('date', '')} memento sources digest "
                f"`{entry.get('memento_sources', '?')}`.",
                "",
                "| contender | median | min | max | ×LIMIT | ×gunicorn | bad | stale | flap "
                "| path | patched | reloads | fgt | reload | first | ordinary | first ÷ ord. |",
                "| --- " + "| ---: " * 8 + "| --- " + "| ---: " * 7 + "|",
            ]
            for name, record in contenders(entry).items():
                if "error" in record:
                    lines.append(f"| {name} | error: {record['error'][:150]!s} |" + " |" * 15)
                    continue
                ratio = table.get(name, {})
                first = record.get("first_request", {})
                cells = [
                    *_edit_cells(name, record, ratio, "vs_gunicorn"),
                    record.get("path", "–"),
                    record.get("patched", "–"),
                    record.get("reloads", "–"),
                    *_reload_cells(record),
                    _fmt(first.get("first_ms")),
                    _fmt(first.get("ordinary_ms")),
                    _x(first.get("ratio")),
                ]
                lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
            lines.append("")
    return lines


def headline(targets: list[dict]) -> list[str]:
    """One row per target: how many measurements meet it, the best and worst value."""
    lines = [
        "| target | met | best | worst (where) |",
        "| --- | :---: | ---: | --- |",
    ]
    groups: dict[str, list[dict]] = {}
    for row in targets:
        groups.setdefault(row["target"], []).append(row)
    for target, rows in groups.items():
        measured = [row for row in rows if row["value"] is not None]
        if not measured:
            lines.append(f"| {target} | – | – | – |")
            continue
        below = rows[0]["bound"] is not None and "≥" not in target
        ordered = sorted(measured, key=lambda row: row["value"], reverse=not below)
        best, worst = ordered[0], ordered[-1]
        met = sum(1 for row in measured if row["ok"])
        lines.append(
            f"| {target} | {met}/{len(measured)} | {_fmt(best['value'], 3)} | "
            f"{_fmt(worst['value'], 3)} ({worst['where']}) |"
        )
    return lines


def _net(record: dict, bare: dict, key: str) -> float | None:
    if key not in record or key not in bare:
        return None
    return round(record[key] - bare[key], 3)


# -- plot --------------------------------------------------------------------------


def plot(results: dict, path: Path) -> bool:
    """Draw the latency medians per application and the idle figures; False
    when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    latency = dict(results.get("latency", {}))
    for version, apps in results.get("functions", {}).items():
        for key, entry in apps.items():
            latency[f"view-body edit, Python {version}, {key}"] = entry
    keys = list(latency)
    extra = [name for name in ("idle", "cpu") if results.get(name)]
    panels = len(keys) + len(extra)
    if not panels:
        return False
    cols = 2
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(14, 4.2 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, key in zip(flat, keys):
        _plot_latency(ax, key, latency[key])
    for ax, name in zip(flat[len(keys) :], extra):
        (_plot_idle if name == "idle" else _plot_cpu)(ax, results[name])
    for ax in flat[panels:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _colour(name: str) -> str:
    if name == "LIMIT":
        return "#555555"
    if is_peer(name) or name == "hmr":
        return "#d62728"
    scope = scope_of(name)
    return {"all": "#1f77b4", "functions": "#9467bd"}.get(scope or "", "#2ca02c")


def _plot_latency(ax: Any, key: str, entry: dict) -> None:
    names, colours, medians, lows, highs = [], [], [], [], []
    for name, record in contenders(entry).items():
        median = _median(record)
        if median is None:
            continue
        names.append(name.replace("memento:", ""))
        colours.append(_colour(name))
        medians.append(median)
        lows.append(median - float(record.get("min_ms") or median))
        highs.append(float(record.get("max_ms") or median) - median)
    positions = list(range(len(names)))
    ax.barh(positions, medians, xerr=[lows, highs], color=colours, capsize=2)
    ax.set_yticks(positions, names, fontsize=8)
    ax.invert_yaxis()
    limit = _median(entry.get("LIMIT"))
    if limit:
        ax.axvline(limit * 1.3, color="#555555", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("edit → fresh, ms (median, min–max), log scale; dashed: 1.3 × LIMIT")
    ax.set_title(f"{key}: {entry.get('modules', '?')} modules")


def _plot_idle(ax: Any, idle: dict) -> None:
    medians = idle.get("median_rps", {})
    names = list(medians)
    ax.bar(
        range(len(names)),
        [medians[n] for n in names],
        color=["#555555" if n == "bare" else "#1f77b4" for n in names],
    )
    ax.set_xticks(
        range(len(names)),
        [n.replace("memento:", "") for n in names],
        fontsize=8,
        rotation=15,
    )
    if "bare" in medians:
        ax.axhline(medians["bare"] * 0.97, color="#555555", linestyle="--", linewidth=1)
    ax.set_ylabel("requests/s (median)")
    ax.set_title(f"idle overhead, {idle.get('app')}")


def _plot_cpu(ax: Any, cpu: dict) -> None:
    runs = {n: r for n, r in cpu.get("runs", {}).items() if "idle_pct" in r}
    names = list(runs)
    width = 0.4
    xs = range(len(names))
    ax.bar(
        [x - width / 2 for x in xs],
        [runs[n]["idle_pct"] for n in names],
        width,
        label="idle",
    )
    ax.bar(
        [x + width / 2 for x in xs],
        [runs[n]["rps1_pct"] for n in names],
        width,
        label="1 request/s",
    )
    ax.set_xticks(list(xs), [n.replace("memento:", "") for n in names], fontsize=8, rotation=15)
    for bound in (0.5, 2.0):
        ax.axhline(bound, color="#555555", linestyle="--", linewidth=1)
    ax.set_ylabel("% of one core")
    ax.set_title(f"CPU tracking {cpu.get('files')} files")
    ax.legend()


def write_reports(results: dict, directory: Path) -> None:
    """Add ratios and targets to ``results``; write results.md and results.png."""
    ratios = compute_ratios(results)
    targets = check_targets(results, ratios)
    results["ratios"] = ratios
    results["targets"] = targets
    (directory / "results.md").write_text(markdown(results, ratios, targets), encoding="utf-8")
    png = directory / "results.png"
    if not plot(results, png) and png.exists():
        png.unlink()
