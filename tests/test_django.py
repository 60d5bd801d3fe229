"""Django, served right: a generated project served by the real CLI, by Mori under
WebTest and by ``manage.py runserver`` with ``memento.contrib.django``.

Everything runs in subprocesses (Django's setup is global to a process).
The project (tests/django_project.py) is generated and migrated once per
session and copied for each test. A reload in process keeps the pid and
the boot id drawn in ``settings.py``; a restart keeps the pid (``execv``)
and draws a new boot id.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from django_project import (
    QUESTION,
    Prober,
    Process,
    boot,
    copy,
    free_port,
    generate,
    get,
    install_memento_app,
    login,
    replace_in,
    shows,
    wait_serving,
)
from helpers import edit, run_python

TESTS = Path(__file__).resolve().parent

#: Bound of the wait for an edit to be served (a reload, or a restart).
EDIT_TIMEOUT = 20.0

Start = Callable[..., tuple[Process, str]]


@pytest.fixture(scope="session")
def django_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated, migrated project; tests work on copies of it."""
    return generate(tmp_path_factory.mktemp("django") / "mysite")


@pytest.fixture
def project(django_template: Path, tmp_path: Path) -> Path:
    return copy(django_template, tmp_path / "project")


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Servers started by a test; each one's process group is killed at the end."""
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


@pytest.fixture
def memento_server(project: Path, processes: list[Process]) -> Start:
    """``python -m memento [options] mysite.wsgi:application`` (waitress), serving."""

    def start(*options: str) -> tuple[Process, str]:
        port = free_port()
        argv = [sys.executable, "-m", "memento", "--server", "waitress", "--port", str(port)]
        processes.append(Process([*argv, *options, "mysite.wsgi:application"], project))
        base = f"http://127.0.0.1:{port}/"
        wait_serving(processes[-1], base)
        return processes[-1], base

    return start


@pytest.fixture
def runserver(project: Path, processes: list[Process]) -> Start:
    """``python manage.py runserver 127.0.0.1:PORT [options]`` with memento's app installed."""
    install_memento_app(project)

    def start(*options: str) -> tuple[Process, str]:
        port = free_port()
        argv = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", *options]
        processes.append(Process(argv, project))
        base = f"http://127.0.0.1:{port}/"
        wait_serving(processes[-1], base)
        return processes[-1], base

    return start


def served(server: Process, base: str, path: str, text: str, what: str) -> None:
    """Wait until ``path`` shows ``text``."""
    server.wait_for(lambda: shows(base, path, text), EDIT_TIMEOUT, what)


def restarted(server: Process, base: str, boot_id: str) -> None:
    """Wait until a new process image answers (a new boot id).

    Any answer meanwhile counts as "not yet": whether requests during a
    restart are all answered 200 is the prober test's business.
    """

    def new_boot() -> bool:
        status, body = get(base + "polls/boot/")
        return status == 200 and body.split()[1] != boot_id

    server.wait_for(new_boot, EDIT_TIMEOUT, "a restart")


def logged(server: Process, pattern: str) -> list[str]:
    """Wait a little for log lines matching ``pattern`` (the reader thread lags); return them."""
    server.wait_for(lambda: re.search(pattern, server.log), 5, f"a log line {pattern!r}")
    return re.findall(pattern, server.log)


RELOADED = r"reloaded (\d+) modules in [\d.]+ ms.*\(changed: [^)]*{}"


# -- the CLI, in process ---------------------------------------------------------


def test_view_edit_is_served_by_the_same_process(project, memento_server):
    server, base = memento_server()
    before = boot(base)
    assert before[0] == server.pid
    assert shows(base, "polls/", "view-v1")
    replace_in(project / "polls" / "views.py", '"view-v1"', '"view-v2"')
    served(server, base, "polls/", "view-v2", "the view edit")
    assert boot(base) == before, "reloaded in process, no restart"
    logged(server, RELOADED.format(r"polls/views\.py"))
    assert "restarting" not in server.log


def test_new_route_in_an_included_urlconf_is_served(project, memento_server):
    server, base = memento_server()
    before = boot(base)
    assert get(base + "polls/hello/")[0] == 404
    replace_in(
        project / "polls" / "urls.py",
        'path("add/", views.add, name="add"),',
        'path("add/", views.add, name="add"),\n    path("hello/", views.hello, name="hello"),',
    )
    served(server, base, "polls/hello/", "hello-route", "the new route")
    assert boot(base) == before, "reloaded in process, no restart"


def test_utility_and_template_tag_edits_are_served_in_process(project, memento_server):
    server, base = memento_server()
    before = boot(base)
    assert shows(base, "polls/", "tag filter-v1") and shows(base, "polls/", "greeting-v1")
    replace_in(project / "polls" / "utils.py", "greeting-v1", "greeting-v2")
    served(server, base, "polls/", "greeting-v2", "the utility edit")
    tags = project / "polls" / "templatetags" / "poll_extras.py"
    replace_in(tags, "filter-v1", "filter-v2")
    served(server, base, "polls/", "tag filter-v2", "the template tag edit")
    assert boot(base) == before, "reloaded in process, no restart"
    assert "restarting" not in server.log


def test_template_edit_is_served_and_forgets_no_module(project, memento_server):
    server, base = memento_server()
    before = boot(base)
    assert shows(base, "polls/", "template-v1"), "the template is loaded and cached"
    template = project / "polls" / "templates" / "polls" / "index.html"
    replace_in(template, "template-v1", "template-v2")
    served(server, base, "polls/", "template-v2", "the template edit")
    assert boot(base) == before, "reloaded in process, no restart"
    found = logged(server, RELOADED.format(r"polls/templates/polls/index\.html"))
    assert found == ["0"], f"one reload, no module forgotten\n{server.output()}"


def test_settings_edit_restarts_keeping_the_socket(project, memento_server):
    server, base = memento_server()
    pid, boot_id = boot(base)
    assert shows(base, "polls/", "<h1>title-v1</h1>")
    replace_in(project / "mysite" / "settings.py", '"title-v1"', '"title-v2"')
    served(server, base, "polls/", "<h1>title-v2</h1>", "the settings edit")
    new_pid, new_boot = boot(base)
    assert (new_pid, new_boot != boot_id) == (pid, True), "a restart by execv"
    logged(server, re.escape("restarting the process (changed: mysite/settings.py)"))
    assert server.serving_lines() == 2, server.output()
    # the restarted process reloads views in process as before
    replace_in(project / "polls" / "views.py", '"view-v1"', '"view-v2"')
    served(server, base, "polls/", "view-v2", "a view edit after the restart")
    assert boot(base) == (pid, new_boot)
    assert server.stop() == 0, server.output()


def test_model_str_edit_is_seen_in_the_admin_after_a_restart(project, memento_server):
    server, base = memento_server()
    _, boot_id = boot(base)
    admin = login(base)
    status, page = get(base + "admin/polls/question/", opener=admin)
    assert status == 200 and QUESTION in page, page
    replace_in(
        project / "polls" / "models.py",
        "return self.question_text",
        'return f"Q: {self.question_text}"',
    )
    restarted(server, base, boot_id)
    status, page = get(base + "admin/polls/question/", opener=admin)
    assert status == 200, page
    assert f"Q: {QUESTION}" in page, "the change list shows the new __str__"
    logged(server, re.escape("restarting the process (changed: polls/models.py)"))
    assert not re.search(RELOADED.format(r"polls/models\.py"), server.log), (
        "a model edit is never reported as reloaded in process"
    )


def test_syntax_error_in_a_view_shows_the_error_page_then_the_fix(project, memento_server):
    server, base = memento_server()
    before = boot(base)
    assert shows(base, "polls/", "view-v1")
    views = project / "polls" / "views.py"
    good = views.read_text(encoding="utf-8")
    edit(views, good.replace('VIEW = "view-v1"', 'VIEW = "view-v1"\ndef broken(:\n'))
    server.wait_for(lambda: get(base + "polls/")[0] == 500, EDIT_TIMEOUT, "the error page")
    status, page = get(base + "polls/")
    assert status == 500
    assert "SyntaxError" in page and "views.py" in page, page
    assert "DEBUG = True" not in page, "memento's error page, not Django's debug page"
    edit(views, good.replace('"view-v1"', '"view-v2"'))
    served(server, base, "polls/", "view-v2", "the fix")
    assert boot(base)[0] == before[0]
    assert server.proc.poll() is None


def test_post_save_receiver_fires_after_a_model_edit(project, memento_server):
    server, base = memento_server()
    _, boot_id = boot(base)
    saved = project / "saved.log"
    assert get(base + "polls/add/?text=one") == (200, "one")
    assert saved.read_text(encoding="utf-8").splitlines() == ["one"]
    replace_in(
        project / "polls" / "models.py",
        "return self.question_text",
        'return f"Q: {self.question_text}"',
    )
    restarted(server, base, boot_id)
    assert get(base + "polls/add/?text=two") == (200, "Q: two"), "the new model class"
    assert saved.read_text(encoding="utf-8").splitlines() == ["one", "Q: two"]


def test_prober_sees_no_refused_connection_during_edits(project, memento_server):
    server, base = memento_server()
    _, boot_id = boot(base)
    assert shows(base, "polls/", "view-v1")
    polls = project / "polls"
    edits = [  # file, old, new, what /polls/ shows once it is served
        (polls / "views.py", '"view-v1"', '"view-v2"', "view-v2"),
        (polls / "templates" / "polls" / "index.html", "template-v1", "template-v2", "template-v2"),
        (polls / "utils.py", "greeting-v1", "greeting-v2", "greeting-v2"),
        (project / "mysite" / "settings.py", '"title-v1"', '"title-v2"', "title-v2"),
        (polls / "models.py", "return self.question_text", 'return f"Q: {self.question_text}"',
         f"Q: {QUESTION}"),
        (polls / "views.py", '"view-v2"', '"view-v3"', "view-v3"),
    ]  # fmt: skip
    with Prober(base + "polls/boot/") as prober:
        for path, old, new, shown in edits:
            count = len(prober.statuses)
            replace_in(path, old, new)
            served(server, base, "polls/", shown, f"the edit of {path.name}")
            server.wait_for(lambda c=count: len(prober.statuses) > c + 5, what="probes")
    assert prober.failures == [], server.output()
    # A request that comes between a save of a held module and the restart
    # (a few milliseconds) is answered the self-refreshing restart page,
    # never the old code and never an error of the application.
    assert set(prober.statuses) <= {200, 500}, server.output()
    assert all("RestartNeeded" in error for error in prober.errors), prober.errors
    assert boot(base)[1] != boot_id
    assert server.serving_lines() == 3, "two restarts"


def test_memory_grows_less_than_10_mb_over_100_view_edits(project, memento_server):
    server, base = memento_server()
    views = project / "polls" / "views.py"
    source = views.read_text(encoding="utf-8")

    def edit_view(number: int) -> None:
        edit(views, source.replace('"view-v1"', f'"view-{number:04d}"'))
        served(server, base, "polls/", f"view-{number:04d}", f"view edit {number}")

    for number in range(5):  # the first reloads warm the allocator and Django's caches up
        edit_view(number)
    before = server.rss_kb()
    for number in range(5, 105):
        edit_view(number)
    growth = (server.rss_kb() - before) / 1024
    assert growth < 10, f"RSS grew by {growth:.1f} MB over 100 view edits"
    assert len(logged(server, RELOADED.format(r"polls/views\.py"))) >= 100


# -- Mori under WebTest, in a subprocess ------------------------------------------------

WEBTEST_SCRIPT = """\
import logging
import sys

sys.path.insert(0, {tests!r})
from pathlib import Path

from django_project import replace_in
from webtest import TestApp

import memento

records = []


class Remember(logging.Handler):
    def emit(self, record):
        records.append(record)


logger = logging.getLogger("memento")
logger.addHandler(Remember())
logger.setLevel(logging.INFO)


def said(level=logging.INFO):
    return [r.getMessage() for r in records if r.levelno >= level]


polls = Path("polls")
with memento.Mori("mysite.wsgi:application", interval=0, events=False) as mori:
    infos = []
    mori.after_reload(infos.append)
    app = TestApp(mori, lint=True)
    app.get("/polls/").mustcontain("view-v1", "template-v1", {question!r})

    replace_in(polls / "templates" / "polls" / "index.html", "template-v1", "template-v2")
    app.get("/polls/").mustcontain("template-v2", "view-v1")
    assert infos and all(not info.forgotten for info in infos), infos
    assert any(m.startswith("reloaded 0 modules") for m in said()), said()

    replace_in(polls / "views.py", '"view-v1"', '"view-v2"')
    app.get("/polls/").mustcontain("view-v2", "template-v2")
    assert infos[-1].forgotten and infos[-1].error is None, infos[-1]

    reloads = len([m for m in said() if m.startswith("reloaded")])
    new_str = 'return f"Q: {{self.question_text}}"'
    replace_in(polls / "models.py", "return self.question_text", new_str)
    for _ in range(2):  # and it stays so: never the stale model
        page = app.get("/polls/", status=500)
        assert "memento: restart needed" in page.text, page.text
        assert "Q: " not in page.text and "view-v2" not in page.text, page.text
    warnings = said(logging.WARNING)
    assert any("restart" in m.lower() for m in warnings), said()
    assert len([m for m in said() if m.startswith("reloaded")]) == reloads, said()
print("ok")
"""


def test_mori_under_webtest_reloads_templates_and_views_and_asks_a_restart_for_models(project):
    script = WEBTEST_SCRIPT.format(tests=str(TESTS), question=QUESTION)
    result = run_python(script, project)
    assert result.stdout.strip().endswith("ok"), result.stdout + result.stderr


# -- manage.py runserver with memento.contrib.django -----------------------------------


def test_runserver_serves_through_memento_and_reloads_a_view(project, runserver):
    server, base = runserver()
    before = boot(base)
    assert before[0] == server.pid, "served by the process started: no autoreloader child"
    assert shows(base, "polls/", "view-v1")
    replace_in(project / "polls" / "views.py", '"view-v1"', '"view-v2"')
    served(server, base, "polls/", "view-v2", "the view edit")
    assert boot(base) == before, "reloaded in process, no restart"
    logged(server, RELOADED.format(r"polls/views\.py"))


def test_runserver_restarts_on_a_settings_edit(project, runserver):
    server, base = runserver()
    pid, boot_id = boot(base)
    assert shows(base, "polls/", "<h1>title-v1</h1>")
    replace_in(project / "mysite" / "settings.py", '"title-v1"', '"title-v2"')
    served(server, base, "polls/", "<h1>title-v2</h1>", "the settings edit")
    new_pid, new_boot = boot(base)
    assert new_pid == pid == server.pid and new_boot != boot_id, "a restart by execv"
    logged(server, re.escape("restarting the process (changed: mysite/settings.py)"))


def test_runserver_serves_static_files(runserver):
    server, base = runserver()
    assert get(base + "static/polls/style.css") == (200, "body { color: #223344; }\n")
    assert get(base + "static/polls/missing.css")[0] == 404
    status, page = get(base + "admin/login/")
    assert status == 200 and "/static/admin/css/" in page
    assert get(base + "static/admin/css/base.css")[0] == 200


def test_runserver_noreload_serves_but_does_not_reload(project, runserver):
    server, base = runserver("--noreload")
    before = boot(base)
    assert before[0] == server.pid
    assert shows(base, "polls/", "view-v1")
    replace_in(project / "polls" / "views.py", '"view-v1"', '"view-v2"')
    # Nothing to wait for: ask for two seconds that the first code goes on serving.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert server.alive() and shows(base, "polls/", "view-v1"), "no reload with --noreload"
        time.sleep(0.05)
    assert boot(base) == before
    assert "reloaded" not in server.log


# -- examples/django_project --------------------------------------------------------

EXAMPLE = TESTS.parent / "examples" / "django_project"


def test_example_project_migrates_and_serves_a_utility_edit(tmp_path, processes):
    project = tmp_path / "django_project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3"))
    run_python("import runpy, sys; sys.argv = ['manage.py', 'migrate', '-v', '0'];"
               " runpy.run_path('manage.py', run_name='__main__')", project)
    port = free_port()
    argv = [sys.executable, "-m", "memento", "--port", str(port), "mysite.wsgi:application"]
    processes.append(server := Process(argv, project))
    base = f"http://127.0.0.1:{port}/"
    wait_serving(server, base, "polls/")
    assert shows(base, "polls/", "No polls are available")
    replace_in(project / "polls" / "views.py", "headline(len(latest))", "'Polls: ' + headline(0)")
    served(server, base, "polls/", "<h1>Polls: 0 questions</h1>", "the view edit")
    assert get(base + "polls/1/")[0] == 404


MEMORY_SCRIPT = """\
import gc
import sys
import time
import weakref

sys.path.insert(0, {tests!r})
from pathlib import Path

from django_project import replace_in
from webtest import TestApp

import memento


def rss_mb():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


views = Path("polls") / "views.py"
with memento.Mori("mysite.wsgi:application", interval=0, events=False) as mori:
    app = TestApp(mori, lint=True)
    generations = []
    for number in range(1, 106):
        replace_in(views, f'"view-v{{number}}"', f'"view-v{{number + 1}}"')
        app.get("/polls/").mustcontain(f"view-v{{number + 1}}")
        app.get("/admin/login/")
        generations.append(weakref.ref(sys.modules["polls.views"]))
        if number == 5:  # the first reloads warm the allocator and Django's caches up
            before = rss_mb()
    growth = rss_mb() - before
    deadline = time.monotonic() + 5  # the leak check runs once reloads are quiet for a second
    while True:
        gc.collect()
        alive = sum(ref() is not None for ref in generations[:-1])
        if alive <= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert alive <= 1, f"{{alive}} old generations of polls.views alive"
    assert mori.stats.alive <= 1, mori.stats
    assert growth < 10, f"RSS grew by {{growth:.1f}} MB over 100 view edits"
print("ok")
"""


def test_old_generations_are_garbage_over_100_view_edits_in_process(project):
    script = MEMORY_SCRIPT.format(tests=str(TESTS))
    result = run_python(script, project, timeout=120)
    assert result.stdout.strip().endswith("ok"), result.stdout + result.stderr
