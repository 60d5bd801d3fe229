from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_until

from memento._watchfiles import WatchfilesTracker
from memento.tracking import (
    Matcher,
    PollingTracker,
    Stamp,
    Tracker,
    expand,
    make_tracker,
)

ROOT = Path(__file__).resolve().parent.parent

#: Second-aligned modification time: equal-size edits inside this second.
SECOND_NS = 1_600_000_000 * 10**9


def write(path: Path, text: str = "x\n") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def collect(tracker: Tracker, expected: set[str]) -> set[str]:
    """Call ``changed()`` until ``expected`` was reported; return all it reported."""
    seen: set[str] = set()

    def arrived() -> bool:
        seen.update(tracker.changed())
        return expected <= seen

    wait_until(arrived, what=f"changes {sorted(expected)}")
    return seen


def reported_with(tracker: Tracker, sentinel: Path) -> set[str]:
    """Write a tracked ``sentinel``; return everything reported up to it."""
    write(sentinel, f"{time.time_ns()}\n")
    return collect(tracker, {str(sentinel)})


def watcher_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "memento-watcher"}


@pytest.fixture(params=["polling", "watchfiles"])
def tracker(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[Tracker]:
    """Each backend; a watcher that fell back to comparing stamps fails the test."""
    tracker: Tracker
    if request.param == "polling":
        tracker = PollingTracker(0)
    else:
        tracker = WatchfilesTracker()
    yield tracker
    tracker.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- Stamp and Matcher -------------------------------------------------------


def test_stamp_holds_mtime_size_and_inode(tmp_path: Path) -> None:
    path = write(tmp_path / "a.py", "x = 1\n")
    st = os.stat(path)
    assert Stamp.of(path) == Stamp(st.st_mtime_ns, 6, st.st_ino)
    assert Stamp.of(path) == (st.st_mtime_ns, st.st_size, st.st_ino)


def test_stamp_of_missing_file_or_directory_is_none(tmp_path: Path) -> None:
    assert Stamp.of(str(tmp_path / "missing.py")) is None
    assert Stamp.of(str(tmp_path)) is None


@pytest.mark.parametrize(
    "path",
    [
        "foo.py~",
        ".#foo.py",
        ".foo.py.swp",
        ".foo.py.swo",
        ".foo.py.swx",
        "4913",
        "upload.tmp",
        "__pycache__/x.cpython-311.pyc",
        "x.pyc",
        "x.pyo",
        ".git/index",
        ".hg/dirstate",
        ".svn/entries",
        "app.log",
        "data.sqlite",
        "data.sqlite3",
        "app.db",
        "app.db-journal",
        "data.sqlite-journal",
        "app.db-wal",
        "app.db-shm",
        ".DS_Store",
        "pkg/__pycache__/mod.py",
        "/srv/site/.git/HEAD",
    ],
)
def test_default_excludes(path: str) -> None:
    assert Matcher().excluded(path.replace("/", os.sep))


@pytest.mark.parametrize(
    "path", ["app.py", "templates/index.html", "pkg/sub/mod.py", "swp.py", "logs.py"]
)
def test_default_includes(path: str) -> None:
    assert not Matcher().excluded(path.replace("/", os.sep))


def test_custom_excludes_replace_the_defaults() -> None:
    matcher = Matcher(["*.txt", "build"])
    assert matcher.excluded("notes.txt")
    assert matcher.excluded(os.path.join("build", "app.py"))
    assert not matcher.excluded("x.pyc")
    assert not Matcher(()).excluded("x.pyc")


def test_expand_covers_directories_globs_and_plain_paths(tmp_path: Path) -> None:
    for relpath in [
        "site/a.html",
        "site/sub/b.css",
        "site/a.html~",
        "site/.git/index",
        "templates/x.html",
        "templates/deep/y.html",
        "templates/z.txt",
        "templates/x.html.swp",
    ]:
        write(tmp_path / relpath)
    missing = tmp_path / "missing.ini"
    watch = [
        str(tmp_path / "site"),
        str(tmp_path / "templates/**/*.html"),
        str(missing),
    ]
    assert expand(watch, Matcher()) == {
        str(tmp_path / "site" / "a.html"),
        str(tmp_path / "site" / "sub" / "b.css"),
        str(tmp_path / "templates" / "x.html"),
        str(tmp_path / "templates" / "deep" / "y.html"),
        str(missing),
    }


# -- tracked files, both backends ---------------------------------------------


def test_nothing_changed_reports_nothing(tmp_path: Path, tracker: Tracker) -> None:
    path = write(tmp_path / "a.py")
    tracker.track([path])
    assert tracker.files == frozenset({path})
    assert tracker.changed() == set()
    assert reported_with(tracker, tmp_path / "a.py") == {path}


def test_equal_size_edits_within_one_second_are_seen(tmp_path: Path, tracker: Tracker) -> None:
    path = write(tmp_path / "a.py", "x = 1\n")
    os.utime(path, ns=(SECOND_NS + 100, SECOND_NS + 100))
    tracker.track([path])
    for text, mtime_ns in [("x = 2\n", SECOND_NS + 200), ("x = 3\n", SECOND_NS + 300)]:
        write(tmp_path / "a.py", text)
        os.utime(path, ns=(mtime_ns, mtime_ns))
        assert collect(tracker, {path}) == {path}
    write(tmp_path / "a.py", "x = 4\n")
    assert collect(tracker, {path}) == {path}


def test_deleted_file_is_reported(tmp_path: Path, tracker: Tracker) -> None:
    path = write(tmp_path / "a.py")
    tracker.track([path])
    os.remove(path)
    assert collect(tracker, {path}) == {path}


def test_missing_file_is_reported_when_it_appears(tmp_path: Path, tracker: Tracker) -> None:
    path = str(tmp_path / "a.py")
    tracker.track([path])
    assert tracker.files == frozenset({path})
    write(tmp_path / "a.py")
    assert collect(tracker, {path}) == {path}


def test_file_appearing_in_a_missing_directory_is_reported(
    tmp_path: Path, tracker: Tracker
) -> None:
    path = str(tmp_path / "pkg" / "sub" / "mod.py")
    tracker.track([path])
    write(tmp_path / "pkg" / "sub" / "mod.py")
    assert collect(tracker, {path}) == {path}


def test_directory_removed_and_made_again_is_still_watched(
    tmp_path: Path, tracker: Tracker
) -> None:
    path = write(tmp_path / "pkg" / "a.py", "x = 1\n")
    tracker.track([path])
    shutil.rmtree(tmp_path / "pkg")
    write(tmp_path / "pkg" / "a.py", "x = 2\n")
    assert collect(tracker, {path}) == {path}
    write(tmp_path / "pkg" / "a.py", "x = 33\n")
    assert collect(tracker, {path}) == {path}
    shutil.rmtree(tmp_path / "pkg")
    assert collect(tracker, {path}) == {path}
    write(tmp_path / "pkg" / "a.py", "x = 4\n")
    assert collect(tracker, {path}) == {path}


def test_named_files_are_tracked_even_if_excluded(tmp_path: Path, tracker: Tracker) -> None:
    path = write(tmp_path / "settings.db")
    tracker.track([path])
    write(tmp_path / "settings.db", "changed\n")
    assert collect(tracker, {path}) == {path}


def test_rename_over_save_is_reported_once(tmp_path: Path, tracker: Tracker) -> None:
    path = write(tmp_path / "a.py", "x = 1\n")
    sentinel = write(tmp_path / "sentinel.py")
    tracker.track([path, sentinel])
    temporary = write(tmp_path / "a.py.tmp", "x = 2\n")
    os.replace(temporary, path)
    assert collect(tracker, {path}) == {path}
    assert reported_with(tracker, tmp_path / "sentinel.py") == {sentinel}


# -- watch directories and globs, both backends -------------------------------

WATCH_DIRECTORY = [
    ("new.py", True),
    ("sub/new.html", True),
    ("deeper/still/new.css", True),
    ("foo.py~", False),
    (".#foo.py", False),
    (".foo.py.swp", False),
    ("__pycache__/x.pyc", False),
    (".git/index", False),
    ("app.log", False),
    ("data.sqlite3", False),
]


@pytest.mark.parametrize("relpath, counts", WATCH_DIRECTORY)
def test_new_file_in_watch_directory(
    tmp_path: Path, tracker: Tracker, relpath: str, counts: bool
) -> None:
    site = tmp_path / "site"
    write(site / "index.html")
    write(site / "sub" / "old.html")
    tracker.track([], [str(site)])
    path = write(site / relpath)
    if counts:
        assert collect(tracker, {path}) == {path}
    else:
        sentinel = site / "sentinel.html"
        assert reported_with(tracker, sentinel) == {str(sentinel)}


def test_deleted_file_in_watch_directory(tmp_path: Path, tracker: Tracker) -> None:
    site = tmp_path / "site"
    path = write(site / "sub" / "old.html")
    tracker.track([], [str(site)])
    os.remove(path)
    assert collect(tracker, {path}) == {path}


WATCH_GLOB = [
    ("templates/new.html", True),
    ("templates/deep/er/new.html", True),
    ("templates/new.txt", False),
    ("templates/new.html~", False),
    ("templates/__pycache__/new.html", False),
    ("other/new.html", False),
    ("new.html", False),
]


@pytest.mark.parametrize("relpath, counts", WATCH_GLOB)
def test_new_file_matching_watch_glob(
    tmp_path: Path, tracker: Tracker, relpath: str, counts: bool
) -> None:
    write(tmp_path / "templates" / "base.html")
    write(tmp_path / "other" / "old.html")
    tracker.track([], [str(tmp_path / "templates" / "**" / "*.html")])
    path = write(tmp_path / relpath)
    if counts:
        assert collect(tracker, {path}) == {path}
    else:
        sentinel = tmp_path / "templates" / "sentinel.html"
        assert reported_with(tracker, sentinel) == {str(sentinel)}


def test_deleted_glob_match(tmp_path: Path, tracker: Tracker) -> None:
    path = write(tmp_path / "templates" / "deep" / "old.html")
    tracker.track([], [str(tmp_path / "templates" / "**" / "*.html")])
    os.remove(path)
    assert collect(tracker, {path}) == {path}


def test_watched_plain_file(tmp_path: Path, tracker: Tracker) -> None:
    path = write(tmp_path / "app.ini")
    tracker.track([], [path])
    write(tmp_path / "app.ini", "changed\n")
    assert collect(tracker, {path}) == {path}


# -- reloads and threads, both backends ---------------------------------------


def test_edit_during_load_is_reported(tmp_path: Path, tracker: Tracker) -> None:
    since = time.time_ns() - 10**9
    during = write(tmp_path / "during.py")
    before = write(tmp_path / "before.py")
    future = write(tmp_path / "future.py")
    os.utime(during, ns=(since + 5 * 10**8, since + 5 * 10**8))
    os.utime(before, ns=(since - 10**9, since - 10**9))
    os.utime(future, ns=(since + 3600 * 10**9, since + 3600 * 10**9))
    tracker.track([during, before, future], since_ns=since)
    assert tracker.changed() == {during}
    assert tracker.changed() == set()


def test_track_again_reports_what_changed_since_the_last_look(
    tmp_path: Path, tracker: Tracker
) -> None:
    # The middleware tracks again after a reload: an edit made while the
    # modules were imported must not be lost.
    path = write(tmp_path / "a.py", "x = 1\n")
    sentinel = write(tmp_path / "sentinel.py")
    tracker.track([path, sentinel])
    write(tmp_path / "a.py", "x = 22\n")
    tracker.track([path, sentinel])
    assert reported_with(tracker, tmp_path / "sentinel.py") == {path, sentinel}
    tracker.track([path, sentinel])
    assert reported_with(tracker, tmp_path / "sentinel.py") == {sentinel}


def test_track_drops_pending_changes_of_untracked_files(tmp_path: Path, tracker: Tracker) -> None:
    first = write(tmp_path / "first.py")
    tracker.track([first])
    write(tmp_path / "first.py", "changed\n")
    second = write(tmp_path / "second.py")
    tracker.track([second])
    assert tracker.files == frozenset({second})
    assert reported_with(tracker, tmp_path / "second.py") == {second}


def test_add_tracks_more_files_and_keeps_pending_changes(tmp_path: Path, tracker: Tracker) -> None:
    first = write(tmp_path / "first.py", "x = 1\n")
    tracker.track([first])
    write(tmp_path / "first.py", "x = 22\n")
    late = write(tmp_path / "lazy" / "late.py", "y = 1\n")
    tracker.add([late, first])
    assert tracker.files == frozenset({first, late})
    assert collect(tracker, {first}) == {first}
    write(tmp_path / "lazy" / "late.py", "y = 22\n")
    assert collect(tracker, {late}) == {late}


def test_added_file_already_gone_is_reported(tmp_path: Path, tracker: Tracker) -> None:
    first = write(tmp_path / "first.py")
    tracker.track([first])
    gone = str(tmp_path / "gone.py")
    tracker.add([gone])
    assert tracker.changed() == {gone}
    assert reported_with(tracker, tmp_path / "first.py") == {first}


def test_added_file_edited_since_the_load_is_reported(tmp_path: Path, tracker: Tracker) -> None:
    first = write(tmp_path / "first.py")
    tracker.track([first])
    since = time.time_ns() - 10**9
    edited = write(tmp_path / "edited.py")
    older = write(tmp_path / "older.py")
    os.utime(edited, ns=(since + 5 * 10**8, since + 5 * 10**8))
    os.utime(older, ns=(since - 10**9, since - 10**9))
    tracker.add([edited, older], since_ns=since)
    assert tracker.changed() == {edited}
    assert reported_with(tracker, tmp_path / "first.py") == {first}


def test_each_change_reaches_one_caller(tmp_path: Path, tracker: Tracker) -> None:
    path = write(tmp_path / "a.py", "x = 1\n")
    sentinel = write(tmp_path / "sentinel.py")
    tracker.track([path, sentinel])
    reports: list[set[str]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            found = tracker.changed()
            if found:
                reports.append(found)
            time.sleep(0.001)

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        # saved by renaming over: a single event, so a single report is due
        os.replace(write(tmp_path / "a.py.new", "x = 22\n"), path)
        wait_until(lambda: reports, what="a report of a.py")
        os.replace(write(tmp_path / "sentinel.py.new", "changed\n"), sentinel)
        wait_until(lambda: len(reports) > 1, what="a report of sentinel.py")
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert reports == [{path}, {sentinel}]


# -- PollingTracker -----------------------------------------------------------


def test_polling_waits_for_the_interval(tmp_path: Path) -> None:
    path = write(tmp_path / "a.py", "x = 1\n")
    tracker = PollingTracker(10)
    tracker.track([path])
    write(tmp_path / "a.py", "x = 22\n")
    assert tracker.changed() == set()
    assert tracker.changed() == set()


def test_polling_looks_again_after_the_interval(tmp_path: Path) -> None:
    path = write(tmp_path / "a.py", "x = 1\n")
    tracker = PollingTracker(0.2)
    tracker.track([path])
    write(tmp_path / "a.py", "x = 22\n")
    assert collect(tracker, {path}) == {path}


def test_polling_reports_edits_during_load_within_the_interval(tmp_path: Path) -> None:
    path = write(tmp_path / "a.py")
    tracker = PollingTracker(10)
    tracker.track([path], since_ns=os.stat(path).st_mtime_ns)
    assert tracker.changed() == {path}


def test_polling_reports_a_burst_at_once(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    tracker = PollingTracker(0, settle=0.2)
    tracker.track([], [str(site)])
    paths = [site / f"page{i:03}.html" for i in range(200)]

    def write_all() -> None:
        for path in paths:
            write(path)
            time.sleep(0.001)

    writer = threading.Thread(target=write_all)
    writer.start()
    try:
        wait_until(paths[0].exists, what="the burst to start")
        first = tracker.changed()
    finally:
        writer.join(10)
    assert first == {str(path) for path in paths}
    assert tracker.changed() == set()


def test_polling_rejects_negative_seconds() -> None:
    with pytest.raises(ValueError, match="interval: expected seconds >= 0, got -1"):
        PollingTracker(-1)
    with pytest.raises(ValueError, match="settle"):
        PollingTracker(0, settle=-0.1)


# -- WatchfilesTracker --------------------------------------------------------


def test_watcher_reports_a_burst_without_losing_files(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    tracker = WatchfilesTracker()
    try:
        tracker.track([], [str(site)])
        paths = {write(site / f"page{i:03}.html") for i in range(200)}
        batches: list[set[str]] = []

        def arrived() -> bool:
            found = tracker.changed()
            if found:
                batches.append(found)
            return set().union(*batches) >= paths

        wait_until(arrived, what="200 new files")
    finally:
        tracker.close()
    assert set().union(*batches) == paths
    assert len(batches) <= 5


def test_watcher_stats_nothing_when_no_event_came(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "a.py")
    tracker = WatchfilesTracker()
    try:
        tracker.track([path])
        looked: list[str] = []
        monkeypatch.setattr(Stamp, "of", classmethod(lambda cls, p: looked.append(p)))
        assert tracker.changed() == set()
        assert looked == []
        monkeypatch.undo()
        assert reported_with(tracker, tmp_path / "a.py") == {path}
    finally:
        tracker.close()


def test_close_stops_the_watcher_thread(tmp_path: Path) -> None:
    before = watcher_threads()
    tracker = WatchfilesTracker()
    tracker.track([write(tmp_path / "a.py")])
    started = watcher_threads() - before
    assert len(started) == 1
    (thread,) = started
    assert thread.daemon
    tracker.close()
    assert not thread.is_alive()
    tracker.close()
    assert tracker.changed() == set()


def test_watcher_restarts_only_when_directories_change(tmp_path: Path) -> None:
    before = watcher_threads()
    tracker = WatchfilesTracker()
    try:
        tracker.track([write(tmp_path / "a.py")])
        first = watcher_threads() - before
        tracker.track([write(tmp_path / "a.py"), write(tmp_path / "b.py")])
        assert watcher_threads() - before == first
        other = write(tmp_path / "other" / "c.py")
        tracker.track([other])
        second = watcher_threads() - before
        assert len(second) == 1
        assert second != first
        write(tmp_path / "other" / "c.py", "changed\n")
        assert collect(tracker, {other}) == {other}
    finally:
        tracker.close()


FORK_SCRIPT = """
import os, sys, threading, time, warnings

warnings.simplefilter("ignore", DeprecationWarning)
from memento._watchfiles import WatchfilesTracker

path = sys.argv[1]

def reported(tracker):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path in tracker.changed():
            return True
        time.sleep(0.01)
    return False

tracker = WatchfilesTracker()
tracker.track([path])
pid = os.fork()
if pid == 0:
    code = 3
    try:
        with open(path, "w") as f:
            f.write("changed in the child before its watcher started\\n")
        if not reported(tracker):
            code = 1
        else:
            with open(path, "w") as f:
                f.write("changed again, seen by the child's watcher\\n")
            code = 0 if reported(tracker) else 2
        tracker.close()
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
tracker.close()
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_watcher_created_before_a_fork_reports_in_the_child(tmp_path: Path) -> None:
    path = write(tmp_path / "a.py")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK_SCRIPT), path],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


# -- make_tracker -------------------------------------------------------------


def test_make_tracker_picks_each_backend() -> None:
    polling = make_tracker(0.5, events=False)
    assert isinstance(polling, PollingTracker)
    assert polling.interval == 0.5
    for events in (True, None):
        tracker = make_tracker(0.5, events=events)
        try:
            assert isinstance(tracker, WatchfilesTracker)
        finally:
            tracker.close()


def test_make_tracker_without_watchfiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)
    monkeypatch.delitem(sys.modules, "memento._watchfiles")
    assert isinstance(make_tracker(0.3), PollingTracker)
    with pytest.raises(ImportError):
        make_tracker(0.3, events=True)
