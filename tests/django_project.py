"""A real Django project for the tests: generated, migrated, served in a subprocess.

:func:`generate` runs ``django-admin startproject mysite`` and ``manage.py
startapp polls`` (``python -m django``), then writes the tutorial's shape:
a ``Question`` model with ``__str__``, its admin, views using a utility
module, ``polls/urls.py`` included from ``mysite/urls.py`` with
``include("polls.urls")``, a template, a template tag library, a static
file and a ``post_save`` receiver connected in ``PollsConfig.ready()``
that appends ``str(instance)`` to ``saved.log``. The sqlite database is
migrated and holds a superuser (:data:`ADMIN`) and one question
(:data:`QUESTION`). Each marker a test edits (``view-v1``,
``greeting-v1``, ...) appears once in its file.

Pages: ``/polls/`` (every marker, and the questions by ``__str__``),
``/polls/boot/`` (``"<pid> <boot>"``: the boot id is drawn in
``settings.py``, so it is new in each process image and survives
in-process reloads), ``/polls/add/?text=...`` (saves a question, answers
its ``__str__``), ``/polls/hello/`` once routed, and the admin.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Callable

from helpers import clean_env, edit, wait_until

#: The superuser's name and password.
ADMIN = ("admin", "memento-admin-1")
#: The question the database holds.
QUESTION = "What is new?"

#: Bound of the waits for a process to serve or restart (a loaded machine starts slowly).
START_TIMEOUT = 30.0

SETTINGS_TAIL = '''

# -- added for memento's tests --------------------------------------------------
import uuid  # noqa: E402

#: Drawn once per process image: tells a restart from an in-process reload.
BOOT = uuid.uuid4().hex
POLLS_TITLE = "title-v1"
'''

FILES = {
    "mysite/urls.py": '''\
        from django.contrib import admin
        from django.urls import include, path

        urlpatterns = [
            path("polls/", include("polls.urls")),
            path("admin/", admin.site.urls),
        ]
        ''',
    "polls/urls.py": '''\
        from django.urls import path

        from . import views

        app_name = "polls"
        urlpatterns = [
            path("", views.index, name="index"),
            path("boot/", views.boot, name="boot"),
            path("add/", views.add, name="add"),
        ]
        ''',
    "polls/views.py": '''\
        import os

        from django.conf import settings
        from django.http import HttpResponse
        from django.shortcuts import render
        from django.utils import timezone

        from .models import Question
        from .utils import greeting

        VIEW = "view-v1"


        def index(request):
            context = {
                "title": settings.POLLS_TITLE,
                "view": VIEW,
                "greeting": greeting(),
                "questions": Question.objects.order_by("-pub_date")[:5],
            }
            return render(request, "polls/index.html", context)


        def boot(request):
            return HttpResponse(f"{os.getpid()} {settings.BOOT}", content_type="text/plain")


        def add(request):
            question = Question.objects.create(
                question_text=request.GET["text"], pub_date=timezone.now()
            )
            return HttpResponse(str(question), content_type="text/plain")


        def hello(request):
            return HttpResponse("hello-route", content_type="text/plain")
        ''',
    "polls/utils.py": '''\
        def greeting():
            return "greeting-v1"
        ''',
    "polls/models.py": '''\
        from django.db import models


        class Question(models.Model):
            question_text = models.CharField(max_length=200)
            pub_date = models.DateTimeField("date published")

            def __str__(self):
                return self.question_text
        ''',
    "polls/admin.py": '''\
        from django.contrib import admin

        from .models import Question

        admin.site.register(Question)
        ''',
    "polls/apps.py": '''\
        from django.apps import AppConfig


        class PollsConfig(AppConfig):
            default_auto_field = "django.db.models.BigAutoField"
            name = "polls"

            def ready(self):
                from . import signals  # noqa: F401 (connects the receivers)
        ''',
    "polls/signals.py": '''\
        from django.conf import settings
        from django.db.models.signals import post_save
        from django.dispatch import receiver

        from .models import Question


        @receiver(post_save, sender=Question)
        def record_saved(sender, instance, created, **kwargs):
            with open(settings.BASE_DIR / "saved.log", "a", encoding="utf-8") as log:
                log.write(f"{instance}\\n")
        ''',
    "polls/templatetags/__init__.py": "",
    "polls/templatetags/poll_extras.py": '''\
        from django import template

        register = template.Library()


        @register.filter
        def mark(value):
            return f"{value} filter-v1"
        ''',
    "polls/templates/polls/index.html": """\
        {% load poll_extras %}<!DOCTYPE html>
        <html>
        <head><title>{{ title }}</title></head>
        <body>
        <h1>{{ title }}</h1>
        <p>{{ view }}</p>
        <p>{{ greeting }}</p>
        <p>template-v1</p>
        <p>{{ "tag"|mark }}</p>
        <ul>{% for question in questions %}<li>{{ question }}</li>{% endfor %}</ul>
        </body>
        </html>
        """,
    "polls/static/polls/style.css": "body { color: #223344; }\n",
}

SETUP_DATA = f"""\
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django.setup()
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from polls.models import Question

call_command("migrate", verbosity=0)
User.objects.create_superuser({ADMIN[0]!r}, "admin@example.com", {ADMIN[1]!r})
Question.objects.create(question_text={QUESTION!r}, pub_date=timezone.now())
"""


def generate(root: Path) -> Path:
    """Generate the project into ``root`` (created); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "django", "startproject", "mysite", "."], root)
    _run([sys.executable, "manage.py", "startapp", "polls"], root)
    for relpath, source in FILES.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    (root / "polls" / "tests.py").unlink()
    settings = root / "mysite" / "settings.py"
    text = settings.read_text(encoding="utf-8")
    text = _replace(text, r"ALLOWED_HOSTS = \[\]", 'ALLOWED_HOSTS = ["127.0.0.1", "localhost"]')
    text = _replace(text, r"INSTALLED_APPS = \[\n", 'INSTALLED_APPS = [\n    "polls",\n')
    settings.write_text(text + SETTINGS_TAIL, encoding="utf-8")
    _run([sys.executable, "manage.py", "makemigrations", "polls", "-v", "0"], root)
    _run([sys.executable, "-c", SETUP_DATA], root)
    (root / "saved.log").unlink()  # written by the receiver for the question above
    return root


def install_memento_app(root: Path) -> None:
    """Put ``"memento.contrib.django"`` first in ``INSTALLED_APPS``."""
    settings = root / "mysite" / "settings.py"
    text = settings.read_text(encoding="utf-8")
    first = 'INSTALLED_APPS = [\n    "memento.contrib.django",\n'
    text = _replace(text, r"INSTALLED_APPS = \[\n", first)
    settings.write_text(text, encoding="utf-8")


def copy(template: Path, target: Path) -> Path:
    """A copy of a generated project (stamps kept, as after a checkout)."""
    shutil.copytree(template, target)
    return target


def _replace(text: str, pattern: str, new: str) -> str:
    changed, count = re.subn(pattern, new, text, count=1)
    assert count == 1, f"{pattern!r} not in the generated settings"
    return changed


def _run(argv: Sequence[str], cwd: Path) -> None:
    result = subprocess.run(
        argv, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (
        f"{' '.join(argv)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def replace_in(path: Path, old: str, new: str) -> None:
    """Edit ``path`` as an editor saves it, replacing ``old`` (which must be there) by ``new``."""
    source = path.read_text(encoding="utf-8")
    assert source.count(old) == 1, f"{old!r} not once in {path}"
    edit(path, source.replace(old, new))


# -- HTTP ----------------------------------------------------------------------


def get(
    url: str,
    *,
    opener: urllib.request.OpenerDirector | None = None,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, str]:
    """GET (or POST ``data``) on a new connection: ``(status, body)``, errors included."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}))
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def login(base: str) -> urllib.request.OpenerDirector:
    """Log in through the admin's login form; an opener holding the session cookie."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    status, page = get(base + "admin/login/", opener=opener)
    assert status == 200, page
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, page
    form = {
        "csrfmiddlewaretoken": token.group(1),
        "username": ADMIN[0],
        "password": ADMIN[1],
        "next": "/admin/",
    }
    status, page = get(base + "admin/login/", opener=opener, data=form)
    assert status == 200 and "Log out" in page, page
    return opener


def boot(base: str) -> tuple[int, str]:
    """The pid and boot id ``/polls/boot/`` answers."""
    status, body = get(base + "polls/boot/")
    assert status == 200, body
    pid, boot_id = body.split()
    return int(pid), boot_id


def shows(base: str, path: str, text: str) -> bool:
    """Whether ``path`` answers 200 with ``text`` in its body."""
    status, body = get(base + path)
    return status == 200 and text in body


class Prober:
    """GET one URL every ``period`` seconds in a thread, each on a new connection.

    ``statuses`` holds the HTTP statuses answered, ``errors`` the start of
    the answers other than 200, ``failures`` the requests that got none
    (refused, reset, timed out).
    """

    def __init__(self, url: str, period: float = 0.02, timeout: float = 20.0) -> None:
        self.url, self.period, self.timeout = url, period, timeout
        self.statuses: list[int] = []
        self.failures: list[str] = []
        self.errors: list[str] = []  # the start of each answer other than 200
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)
        assert not self._thread.is_alive(), "the prober did not stop"

    def _run(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        while not self._stop.wait(self.period):
            conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=self.timeout)
            try:
                conn.request("GET", parts.path)
                response = conn.getresponse()
                body = response.read()
                self.statuses.append(response.status)
                if response.status != 200:
                    self.errors.append(body.decode("utf-8", "replace")[:300])
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
            finally:
                conn.close()


# -- processes -----------------------------------------------------------------


class Process:
    """A server in a subprocess of its own process group; threads collect its output."""

    def __init__(self, argv: Sequence[str], cwd: Path) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=_collect, args=(stream, lines), name=name, daemon=True)
            for stream, lines, name in (
                (self.proc.stdout, self.out, "server-stdout"),
                (self.proc.stderr, self.err, "server-stderr"),
            )
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return "".join(self.err)

    def output(self) -> str:
        return f"$ {' '.join(self.argv)}\n" + "".join(self.out) + "".join(self.err)

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exited {self.proc.returncode}\n{self.output()}")
        return True

    def wait_for(
        self, predicate: Callable[[], object], timeout: float = START_TIMEOUT, what: str = ""
    ) -> object:
        """``wait_until`` that fails at once if the process ends, and shows its output."""
        try:
            return wait_until(lambda: self.alive() and predicate(), timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

    def serving_lines(self) -> int:
        """How many "serving" lines memento printed: one per process image."""
        return len(re.findall(r"memento: serving .* on http://", "".join(self.out)))

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match, status
        return int(match.group(1))

    def stop(self) -> int:
        """Ctrl-C; the exit status. Killed (the whole group) after 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"Ctrl-C did not end it\n{self.output()}") from None
        finally:
            self.kill()

    def kill(self) -> None:
        """End the process group, whatever state it is in."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _collect(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def wait_serving(process: Process, base: str, path: str = "polls/boot/") -> None:
    """Wait until ``path`` answers 200."""

    def answers() -> bool:
        try:
            return get(base + path, timeout=5)[0] == 200
        except OSError:
            return False

    process.wait_for(answers, what=f"{base}{path} to answer")
