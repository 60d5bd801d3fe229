"""The Django part of the benchmarks: the polls project, its contenders, its edits.

The project is ``examples/django_project`` (``startproject mysite`` plus
``startapp polls``) copied into ``bench/work/django/<contender>/`` with two
pages added: ``/polls/marker/`` renders ``MARKER`` from ``polls/views.py``
through a template (a *view edit* rewrites that module), ``/polls/page/``
renders ``polls/page.html``, which holds the marker itself (a *template
edit*). Both files are rewritten atomically, like ``marker.py`` of the
generated applications; the database is migrated once per copy.

Contenders, each serving the same project from its own copy:

* ``memento``: ``memento mysite.wsgi:application`` (waitress, the
  watchfiles thread), as the README tells Django users;
* ``memento runserver``: ``manage.py runserver`` with
  ``memento.contrib.django`` first in ``INSTALLED_APPS``;
* ``runserver``: Django's own ``manage.py runserver`` (``StatReloader``,
  which restarts the process on every save);
* ``runserver+watchfiles``: the same with ``django_watchfiles`` installed
  (``WatchfilesReloader``: events instead of polling, still a restart).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genapp import MARKER_RE, marker_value

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "django_project"
HOST = "127.0.0.1"

#: The two kinds of edit measured, and the page each one shows on.
EDITS = {"view": "/polls/marker/", "template": "/polls/page/"}

VIEWS_TAIL = '''

MARKER = "{value}"


def marker(request):
    return render(request, "polls/marker.html", {{"marker": MARKER}})


def page(request):
    return render(request, "polls/page.html")
'''

URLS = """\
from django.urls import path

from . import views

app_name = "polls"
urlpatterns = [
    path("", views.index, name="index"),
    path("<int:question_id>/", views.detail, name="detail"),
    path("marker/", views.marker, name="marker"),
    path("page/", views.page, name="page"),
]
"""

MARKER_TEMPLATE = "<!DOCTYPE html>\n<html><body><p>MARKER={{ marker }};</p></body></html>\n"
PAGE_TEMPLATE = "<!DOCTYPE html>\n<html><body><p>MARKER={value};</p></body></html>\n"


@dataclass(frozen=True)
class DjangoContender:
    """One way of serving the Django project: ``kind`` is ``memento``,
    ``memento-runserver``, ``runserver`` or ``runserver-watchfiles``."""

    kind: str

    @property
    def name(self) -> str:
        return {
            "memento": "memento",
            "memento-runserver": "memento runserver",
            "runserver": "runserver",
            "runserver-watchfiles": "runserver+watchfiles",
        }[self.kind]

    @property
    def is_memento(self) -> bool:
        return self.kind.startswith("memento")

    @property
    def apps(self) -> tuple[str, ...]:
        """Apps put first in ``INSTALLED_APPS``."""
        return {
            "memento-runserver": ("memento.contrib.django",),
            "runserver-watchfiles": ("django_watchfiles",),
        }.get(self.kind, ())

    @property
    def gap(self) -> tuple[float, float]:
        """Seconds between a fresh answer and the next edit: StatReloader
        stats every second, so its edits fall anywhere in that period."""
        return (0.15, 0.45) if self.is_memento else (1.0, 2.0)

    def command(self, port: int) -> list[str]:
        if self.kind == "memento":
            return [
                sys.executable, "-m", "memento", "--port", str(port), "mysite.wsgi:application",
            ]  # fmt: skip
        return [sys.executable, "manage.py", "runserver", f"{HOST}:{port}"]


CONTENDERS = tuple(
    DjangoContender(kind)
    for kind in ("memento", "memento-runserver", "runserver", "runserver-watchfiles")
)


def make_project(directory: Path, contender: DjangoContender, value: str) -> Path:
    """Copy the example project into ``directory`` (replaced), add the marker
    pages showing ``value``, set ``INSTALLED_APPS`` for ``contender``, migrate."""
    if directory.exists():
        shutil.rmtree(directory)
    ignore = shutil.ignore_patterns("__pycache__", "db.sqlite3")
    shutil.copytree(EXAMPLE, directory, ignore=ignore)
    settings = directory / "mysite" / "settings.py"
    text = re.sub(r"\n\s*'memento\.contrib\.django',[^\n]*", "", settings.read_text())
    first = "".join(f"\n    {app!r}," for app in contender.apps)
    text = text.replace("INSTALLED_APPS = [", "INSTALLED_APPS = [" + first, 1)
    settings.write_text(text)
    views = directory / "polls" / "views.py"
    views.write_text(views.read_text() + VIEWS_TAIL.format(value=value))
    (directory / "polls" / "urls.py").write_text(URLS)
    templates = directory / "polls" / "templates" / "polls"
    (templates / "marker.html").write_text(MARKER_TEMPLATE)
    (templates / "page.html").write_text(PAGE_TEMPLATE.format(value=value))
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=120,
        env=_env(),
    )
    # compiled, as after a first start
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "mysite", "polls"],
        cwd=directory,
        check=True,
        timeout=120,
        env=_env(),
    )
    return directory


def writer(project: Path, edit: str) -> tuple[Path, Callable[[Path, str], None]]:
    """The file an ``edit`` (``view`` or ``template``) rewrites, and how."""
    if edit == "view":
        path = project / "polls" / "views.py"
        source = path.read_text()
        start = MARKER_LINE.search(source)
        assert start, path

        def write_view(target: Path, value: str) -> None:
            replace_atomically(target, MARKER_LINE.sub(f'MARKER = "{value}"', source))

        return path, write_view
    path = project / "polls" / "templates" / "polls" / "page.html"
    return path, lambda target, value: replace_atomically(
        target, PAGE_TEMPLATE.format(value=value)
    )


MARKER_LINE = re.compile(r'^MARKER = "[^"]*"', re.MULTILINE)


def replace_atomically(path: Path, text: str) -> None:
    """Write a temporary file beside ``path``, then ``os.replace`` it, as editors save."""
    fd, temp = tempfile.mkstemp(prefix=".bench-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def reloader_line(log_text: str) -> str | None:
    """Which autoreloader Django's runserver said it used, if any."""
    match = re.search(r"Watching for file changes with (\w+)", log_text)
    return match.group(1) if match else None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)
    return env


__all__ = [
    "CONTENDERS",
    "EDITS",
    "MARKER_RE",
    "DjangoContender",
    "make_project",
    "marker_value",
    "reloader_line",
    "writer",
]
