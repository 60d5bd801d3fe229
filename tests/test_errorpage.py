"""The 500 page: HTML or text, loopback check, what it shows, escaping."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from html import escape, unescape
from pathlib import Path

import pytest
from chromium import FLAGS as BROWSER_FLAGS
from chromium import require_browser

from memento import RestartNeeded, errorpage
from memento._compat import resources_files

BROWSER_TIMEOUT = 90
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
RENDER_SCRIPT = Path(__file__).with_name("render_errorpage.py")


def write_module(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def run_module(path: Path) -> BaseException:
    """Execute the module at ``path`` as an import would; return what it raised."""
    spec = importlib.util.spec_from_file_location("errorpage_probe", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(Exception) as info:
        spec.loader.exec_module(module)
    return info.value


def page(error: BaseException, changed=(), *, html=True, show_traceback=True) -> str:
    status, headers, body = errorpage.render(
        error, list(changed), html=html, show_traceback=show_traceback
    )
    assert status == "500 Internal Server Error"
    assert dict(headers)["Content-Length"] == str(len(body))
    return body.decode("utf-8")


def visible_text(body: str) -> str:
    """What a reader sees: the body without its tags, entities decoded."""
    return unescape(re.sub(r"<[^>]*>", "", body))


def fail() -> None:
    raise RuntimeError("factory failed")


def chained(context: bool) -> BaseException:
    """A RuntimeError caused by a KeyError, or raised while handling it."""
    try:
        try:
            {}["missing_key"]
        except KeyError as exc:
            if context:
                fail()
            raise RuntimeError("factory failed") from exc
    except RuntimeError as exc:
        return exc
    raise AssertionError("no exception raised")


# -- negotiation and loopback -----------------------------------------------


@pytest.mark.parametrize(
    "accept, html",
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("text/*", False),
        ("text/plain", False),
        ("application/json", False),
        ("text/html", True),
        ("TEXT/HTML", True),
        (BROWSER_ACCEPT, True),
        ("text/html, */*;q=0.1", True),
        ("text/html, text/plain", True),
        ("text/plain, text/html", False),
        ("text/html;q=0.5, text/plain", False),
        ("text/plain;q=0.2, text/html;q=0.8", True),
        ("text/html;q=0", False),
        ("text/html;q=nonsense", False),
        ("text/html;level=1;q=0.9, text/plain;q=0.5", True),
    ],
)
def test_accept_header_picks_html_or_text(accept, html):
    assert errorpage.wants_html(accept) is html


@pytest.mark.parametrize(
    "address, loopback",
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.168.1.2", False),
        ("2001:db8::1", False),
        ("", False),
        ("garbage", False),
        (None, False),
    ],
)
def test_loopback_clients_are_told_by_remote_addr(address, loopback):
    assert errorpage.is_loopback({"REMOTE_ADDR": address}) is loopback


def test_missing_remote_addr_is_not_loopback():
    assert errorpage.is_loopback({}) is False


# -- what the page says -----------------------------------------------------

BROKEN_VIEWS = """\
    import os


    def index(request:
        return "hello"
    """


@pytest.mark.parametrize("html", [True, False])
def test_syntax_error_page_names_error_line_and_file(tmp_path, html):
    path = write_module(tmp_path / "shop" / "views.py", BROKEN_VIEWS)
    error = run_module(path)
    assert isinstance(error, SyntaxError)
    body = visible_text(page(error, [str(path)], html=html))
    assert "SyntaxError" in body
    assert f"line {error.lineno}" in body
    assert str(path) in body
    assert error.text.strip() in body
    assert "^" in body
    assert "Traceback" in body


@pytest.mark.parametrize("html", [True, False])
def test_syntax_error_for_remote_client_names_base_name_only(tmp_path, html):
    path = write_module(tmp_path / "shop" / "views.py", BROKEN_VIEWS)
    error = run_module(path)
    body = page(error, [str(path)], html=html, show_traceback=False)
    assert "SyntaxError" in body
    assert f"line {error.lineno}" in body
    assert "views.py" in body
    assert str(tmp_path) not in body
    assert "def index" not in body
    assert error.text.strip() not in body
    assert "Traceback" not in body
    assert 'File "' not in body


@pytest.mark.parametrize("show_traceback", [True, False])
@pytest.mark.parametrize("html", [True, False])
def test_missing_module_is_named(tmp_path, html, show_traceback):
    path = write_module(tmp_path / "wsgi.py", "import memento_no_such_module\n")
    error = run_module(path)
    body = page(error, [str(path)], html=html, show_traceback=show_traceback)
    assert "ModuleNotFoundError" in body
    assert "memento_no_such_module" in body


@pytest.mark.parametrize("html", [True, False])
def test_import_error_hides_installation_paths_from_remote_clients(tmp_path, html):
    path = write_module(tmp_path / "wsgi.py", "from os import memento_no_such_name\n")
    error = run_module(path)
    assert os.__file__ in str(error)
    body = page(error, [str(path)], html=html, show_traceback=False)
    assert "ImportError" in body
    assert "memento_no_such_name" in body
    assert "os.py" in body
    assert os.path.dirname(os.__file__) not in body


@pytest.mark.parametrize("html", [True, False])
def test_chained_exceptions_are_all_shown_with_the_traceback(html):
    body = page(chained(context=False), html=html)
    assert "KeyError" in body
    assert "missing_key" in body
    assert "RuntimeError" in body
    assert "direct cause" in body
    assert body.index("KeyError") < body.rindex("RuntimeError")


@pytest.mark.parametrize("html", [True, False])
def test_exception_during_handling_is_shown_with_its_context(html):
    body = page(chained(context=True), html=html)
    assert "KeyError" in body
    assert "During handling of the above exception" in body


def test_remote_client_sees_only_the_last_exception_of_a_chain():
    body = page(chained(context=False), show_traceback=False)
    assert "RuntimeError" in body
    assert "factory failed" in body
    assert "KeyError" not in body


LOADER = """\
    CONFIG = {config!r}


    def load():
        raise FileNotFoundError("no configuration file at " + CONFIG)


    load()
    """


@pytest.mark.parametrize("html", [True, False])
def test_remote_client_sees_no_traceback_source_or_absolute_path(tmp_path, html):
    config = tmp_path / "conf" / "app.ini"
    path = write_module(tmp_path / "settings.py", LOADER.format(config=str(config)))
    error = run_module(path)
    assert str(config) in str(error)
    body = page(error, [str(path)], html=html, show_traceback=False)
    assert "FileNotFoundError" in body
    assert "no configuration file at app.ini" in body
    assert "settings.py" in body
    assert "loopback" in body
    assert str(tmp_path) not in body
    assert "raise FileNotFoundError" not in body
    assert "Traceback" not in body
    assert 'File "' not in body


@pytest.mark.parametrize("html", [True, False])
def test_loopback_client_sees_frames_with_source_lines(tmp_path, html):
    config = tmp_path / "conf" / "app.ini"
    path = write_module(tmp_path / "settings.py", LOADER.format(config=str(config)))
    body = page(run_module(path), [str(path)], html=html)
    source = 'raise FileNotFoundError("no configuration file at " + CONFIG)'
    assert (escape(source) if html else source) in body
    assert str(config) in body
    assert "Traceback" in body
    assert "in load" in body or 'in <span class="function">load</span>' in body


def recurse(depth: int) -> int:
    return recurse(depth + 1)


@pytest.mark.parametrize("html", [True, False])
def test_deep_recursion_is_cut_short(html):
    with pytest.raises(RecursionError) as info:
        recurse(0)
    body = page(info.value, html=html)
    assert "RecursionError" in body
    assert "repeated" in body
    assert len(body) < 40_000


def test_broken_str_does_not_break_the_page():
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    body = page(Unprintable(), html=False)
    assert "Unprintable: <exception str() failed>" in body


def test_no_changed_files_is_said():
    body = page(ValueError("boom"), [], html=False)
    assert "No changed file: the first import, or a reload asked for by hand." in body


def test_generation_is_shown_when_given():
    for html in (True, False):
        _, _, body = errorpage.render(
            ValueError("boom"), [], html=html, show_traceback=False, generation=7
        )
        assert b"generation 7" in body


# -- escaping ---------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="'<' and '>' in file names")
@pytest.mark.parametrize("show_traceback", [True, False])
def test_user_text_is_escaped_in_html(tmp_path, show_traceback):
    folder = tmp_path / "<script>alert(2)<" / "script>"
    path = write_module(
        folder / "views.py", 'raise ValueError("<script>alert(1)</script>")\n'
    )
    error = run_module(path)
    body = page(error, [str(path)], show_traceback=show_traceback)
    assert "<script>alert" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert body.count("<script") == 1
    if show_traceback:
        assert escape(str(path)) in body


def test_escaped_message_in_every_variant():
    error = ValueError("<script>alert(1)</script> & <b>bold</b>")
    for show_traceback in (True, False):
        body = page(
            error, ["/srv/<script>x</script>/views.py"], show_traceback=show_traceback
        )
        assert "<script>alert" not in body
        assert "<script>x" not in body
        assert "<b>bold" not in body
        assert escape(str(error)) in body
        assert body.count("<script") == 1


# -- the response -----------------------------------------------------------


@pytest.mark.parametrize(
    "html, content_type",
    [(True, "text/html; charset=utf-8"), (False, "text/plain; charset=utf-8")],
)
def test_headers(html, content_type):
    status, headers, body = errorpage.render(
        ValueError("boom"), ["views.py"], html=html, show_traceback=True
    )
    assert status == "500 Internal Server Error"
    assert dict(headers) == {
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
        "Cache-Control": "no-store",
        "X-Memento-Error": "1",
    }
    assert all(
        isinstance(name, str) and isinstance(value, str) for name, value in headers
    )


def test_respond_follows_accept_header_and_client_address():
    error = chained(context=False)
    local = {"REMOTE_ADDR": "127.0.0.1", "HTTP_ACCEPT": BROWSER_ACCEPT}
    remote = {"REMOTE_ADDR": "10.0.0.1", "HTTP_ACCEPT": "text/plain"}

    _, headers, body = errorpage.respond(error, [], local, None)
    assert dict(headers)["Content-Type"].startswith("text/html")
    assert b"Traceback" in body

    _, headers, body = errorpage.respond(error, [], remote, None)
    assert dict(headers)["Content-Type"].startswith("text/plain")
    assert b"Traceback" not in body

    assert b"Traceback" in errorpage.respond(error, [], remote, True)[2]
    assert b"Traceback" not in errorpage.respond(error, [], local, False)[2]
    assert errorpage.respond(error, [], {}, None)[1][0][1].startswith("text/plain")


def test_html_page_checks_back_and_reloads_itself():
    body = page(ValueError("boom"))
    assert 'cache: "no-store"' in body
    assert '"Accept": "text/plain"' in body
    assert "X-Memento-Error" in body
    assert "location.reload()" in body
    assert "<noscript>" in body
    assert "http://" not in body and "https://" not in body


def test_text_page_has_no_markup():
    body = page(ValueError("boom"), ["views.py"], html=False)
    assert body.startswith("memento: reload failed")
    assert "ValueError: boom" in body
    assert "<script" not in body
    assert "<html" not in body


def test_templates_are_package_data():
    templates = resources_files("memento") / "templates"
    assert (templates / "error.html").is_file()
    assert (templates / "error.txt").is_file()


# -- in a browser -----------------------------------------------------------


def screenshot(page_path: Path, output: Path, profile: Path) -> None:
    browser = require_browser()
    command = [
        browser,
        *BROWSER_FLAGS,
        f"--user-data-dir={profile}",
        "--window-size=1200,900",
        f"--screenshot={output}",
        page_path.as_uri(),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT
    )
    assert result.returncode == 0, result.stderr


def test_html_page_renders_in_a_browser(tmp_path):
    path = write_module(tmp_path / "shop" / "views.py", BROKEN_VIEWS)
    _, _, body = errorpage.render(
        run_module(path), [str(path)], html=True, show_traceback=True, generation=2
    )
    page_path = tmp_path / "page.html"
    page_path.write_bytes(body)
    output = tmp_path / "page.png"
    screenshot(page_path, output, tmp_path / "profile")
    assert output.is_file()
    assert output.stat().st_size > 0
    assert output.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_render_script_writes_a_screenshot(tmp_path):
    require_browser()
    output = tmp_path / "errorpage.png"
    result = subprocess.run(
        [sys.executable, str(RENDER_SCRIPT), str(output)],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert output.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_html_page_shows_the_fixed_application_by_itself(live_server, tmp_path):
    browser = require_browser()
    error = chained(context=False)
    accepts: list[str] = []

    def app(environ, start_response):
        if environ["PATH_INFO"] != "/":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        accepts.append(environ.get("HTTP_ACCEPT", ""))
        if len(accepts) <= 2:  # the page, then its first check: still broken
            status, headers, body = errorpage.respond(error, [], environ, None)
            start_response(status, headers)
            return [body]
        body = b"<!DOCTYPE html><title>shop</title><p>the fixed application</p>"
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [body]

    url = live_server(app, server="wsgiref")
    command = [
        browser,
        *BROWSER_FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=20000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT
    )
    assert "the fixed application" in result.stdout, result.stderr
    assert "text/html" in accepts[0]
    assert accepts[1:3] == ["text/plain", "text/plain"]


@pytest.mark.parametrize("html", [True, False])
def test_restart_needed_is_headed_as_such(html):
    error = RestartNeeded(["/srv/mysite/polls/models.py"], "Django")
    status, _, body = errorpage.render(
        error, ["/srv/mysite/polls/models.py"], html=html, show_traceback=False
    )
    page = body.decode()
    assert status.startswith("500")
    assert "memento: restart needed" in page and "reload failed" not in page
    assert "models.py" in page and "/srv/mysite" not in page
