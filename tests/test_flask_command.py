"""``flask --app APP memento``: the application found as ``flask run`` finds it,
served through memento, in a subprocess with bytecode writing on."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from conftest import free_port
from helpers import clean_env, edit, fetch, wait_until, write_package

pytest.importorskip("flask")

VIEWS = """\
import os

from flask import Blueprint, current_app, render_template

bp = Blueprint("views", __name__)


@bp.route("/")
def index():
    return f"%s debug={current_app.debug} pid={os.getpid()}"


@bp.route("/page")
def page():
    return render_template("page.html")
"""

FACTORY = """\
from flask import Flask


def create_app():
    app = Flask(__name__)
    from .views import bp

    app.register_blueprint(bp)
    return app
"""

Start = Callable[..., str]


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    write_package(
        tmp_path,
        "shop",
        {"__init__.py": FACTORY, "views.py": VIEWS % "v1", "templates/page.html": "<p>t1</p>"},
    )
    return tmp_path


@pytest.fixture
def flask_memento(shop: Path) -> Iterator[Start]:
    """Run ``python -m flask ... memento --port P`` in ``shop``; stopped at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> str:
        port = free_port()
        command = [sys.executable, "-m", "flask", *args, "memento", "--port", str(port)]
        process = subprocess.Popen(
            command, cwd=shop, env=clean_env(env), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        started.append(process)
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: answers(url) or process.poll() is not None, 20, "the server")
        assert process.poll() is None, process.communicate()[0]
        return url

    yield start
    for process in started:
        process.terminate()
        try:
            output = process.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            output = process.communicate()[0]
        assert process.returncode == 0, output


def answers(url: str) -> bool:
    try:
        fetch(url)
    except (OSError, urllib.error.HTTPError):
        return False
    return True


def test_view_and_template_edits_reload_in_the_same_process(shop: Path, flask_memento: Start):
    url = flask_memento("--app", "shop")
    first = fetch(url)
    assert first.startswith("v1 debug=False")
    edit(shop / "shop" / "views.py", VIEWS % "v2")
    wait_until(lambda: fetch(url).startswith("v2"), what="the view edit")
    assert fetch(url).split("pid=")[1] == first.split("pid=")[1], "no restart"
    assert fetch(url + "page") == "<p>t1</p>"
    edit(shop / "shop" / "templates" / "page.html", "<p>t2</p>")
    wait_until(lambda: fetch(url + "page") == "<p>t2</p>", what="the template edit")


def test_the_app_is_found_from_flask_app_and_debug_is_set(shop: Path, flask_memento: Start):
    url = flask_memento(env={"FLASK_APP": "shop"})
    assert fetch(url).startswith("v1 debug=False")
    url = flask_memento("--app", "shop:create_app()", "--debug")
    assert fetch(url).startswith("v1 debug=True")
    edit(shop / "shop" / "views.py", VIEWS % "v2")
    wait_until(lambda: fetch(url).startswith("v2 debug=True"), what="debug on the new app")


def test_no_application_is_a_usage_error(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "flask", "memento"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Could not locate a Flask application" in result.stderr
