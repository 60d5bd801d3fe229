"""The real command line, in a subprocess, on 127.0.0.1."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import APP, clean_env, edit, run_cli, wait_until, write_shop_project

import memento


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return write_shop_project(tmp_path)


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str, first_line: str) -> None:
        self.proc, self.url, self.first_line = proc, url, first_line

    def get(self, path: str = "/") -> str:
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=5) as response:
            return response.read().decode()

    def answer(self, path: str = "/") -> str | None:
        """The body, or None while the application answers an error."""
        try:
            return self.get(path)
        except urllib.error.HTTPError as exc:
            exc.close()
            return None

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.fixture
def serve(shop: Path) -> Iterator:
    started: list[Served] = []

    def start(*args: str) -> Served:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memento", "--port", "0", *args],
            cwd=shop,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = proc.stdout.readline() if proc.stdout else ""
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"no address printed: {line!r}\n{err}")
        served = Served(proc, match.group(0), line)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.communicate(timeout=10)


@pytest.mark.parametrize("server", ["waitress", "wsgiref"])
def test_serves_reloads_and_exits_0_on_ctrl_c(shop, serve, server):
    served = serve("--server", server, "--interval", "0", "shop.wsgi:app")
    assert server in served.first_line
    assert served.get() == "v1"
    edit(shop / "shop" / "wsgi.py", APP % "v2")
    wait_until(lambda: served.get() == "v2", what="the edit to be served")
    code, err = served.stop()
    assert code == 0, err
    assert "Traceback" not in err
    assert "reloaded 2 modules" in err


def test_assassin_with_exception(shop, serve):
    (shop / "shop" / "db.py").write_text("CONN = object()\n")
    edit(shop / "shop" / "wsgi.py", "import shop.db\n" + APP % "v1")
    served = serve("--assassin", "shop", "--except", "shop.db", "--interval", "0", "shop.wsgi:app")
    assert served.get() == "v1"
    edit(shop / "shop" / "wsgi.py", "import shop.db\n" + APP % "v2")
    wait_until(lambda: served.get() == "v2", what="the edit to be served")
    assert served.stop()[0] == 0


def test_no_reload_serves_without_reloading(shop, serve):
    served = serve("--no-reload", "shop.wsgi:app")
    assert served.get() == "v1"
    edit(shop / "shop" / "wsgi.py", APP % "v2")
    assert served.get() == "v1"
    assert served.stop()[0] == 0


def test_app_dir_is_put_on_the_path(shop, serve, tmp_path):
    served = serve("--app-dir", str(shop), "shop.wsgi:app")
    assert served.get() == "v1"
    assert served.stop()[0] == 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["shop.wsgi:app("], "shop.wsgi:app("),
        (["nosuchmodule.wsgi:app"], "nosuchmodule"),
        (["--reload-on", "never", "shop.wsgi:app"], "never"),
        (["--interval", "-1", "shop.wsgi:app"], "-1"),
        (["--interval", "soon", "shop.wsgi:app"], "soon"),
        (["--watch", "/no/such/path", "shop.wsgi:app"], "/no/such/path"),
        (["--assassin", "os", "shop.wsgi:app"], "'os'"),
        (["--threads", "0", "shop.wsgi:app"], "0"),
        (["--bogus", "shop.wsgi:app"], "--bogus"),
    ],
)
def test_bad_input_exits_2_with_one_line(shop, args, named):
    result = run_cli(args, shop)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert named in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "args",
    [
        ["shop.wsgi:app("],
        ["nosuchmodule.wsgi:app"],
        ["shop.wsgi:app", "--interval", "-1"],
        ["--threads", "0", "shop.wsgi:app"],
        ["--port", "70000", "shop.wsgi:app"],
        ["--live", "--reload-on", "request", "shop.wsgi:app"],
    ],
)
def test_bad_value_is_one_line_without_usage(shop, args):
    result = run_cli(args, shop)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("memento: error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bad_flag_keeps_the_usage_text(shop):
    result = run_cli(["--bogus", "shop.wsgi:app"], shop)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: memento")


def test_live_flags():
    from memento.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["x:app"]).live is False
    assert parser.parse_args(["--live", "x:app"]).live is True
    assert parser.parse_args(["--live-all", "x:app"]).live == "all"


def test_live_page_from_the_command_line(shop, serve):
    edit(
        shop / "shop" / "wsgi.py",
        APP.replace("text/plain", "text/html") % "<html><body>live</body></html>",
    )
    served = serve("--live", "shop.wsgi:app")
    assert "data-memento-live" in served.get()
    assert served.stop()[0] == 0


def test_version(shop):
    result = run_cli(["--version"], shop)
    assert result.returncode == 0
    assert memento.__version__ in result.stdout


def test_syntax_error_at_start_is_served_as_error_page(shop, serve):
    edit(shop / "shop" / "wsgi.py", "def app(:\n")
    served = serve("--interval", "0", "shop.wsgi:app")
    with pytest.raises(urllib.error.HTTPError) as info:
        served.get()
    assert info.value.code == 500
    assert "SyntaxError" in info.value.read().decode()
    info.value.close()
    edit(shop / "shop" / "wsgi.py", APP % "fixed")
    wait_until(lambda: served.answer() == "fixed", what="the fix to be served")
    assert served.stop()[0] == 0
