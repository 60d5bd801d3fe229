"""One reload per logical change, nothing left behind, explainable reloads."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
from helpers import APP, edit, wait_until
from webtest import TestApp

import memento

BACKENDS = [pytest.param(False, id="poll"), pytest.param(True, id="watch")]

BURST = """\
import os, sys, time
for i in range(200):
    with open(os.path.join(sys.argv[1], f"mod{i}.py"), "w") as file:
        file.write(f"X = {i} + 1\\n")
    time.sleep(0.0005)
"""


def wrap(events, **options):
    if events:
        pytest.importorskip("watchfiles")
    return memento.Mori("shop.wsgi:app", interval=0, events=events, **options)


def settle(app, middleware, events, reloads):
    """Ask until the expected number of reloads happened (the watcher is asynchronous)."""
    if events:
        wait_until(lambda: app.get("/") and middleware.stats.reloads >= reloads,
                   what=f"{reloads} reloads")
        time.sleep(0.3)  # and no more come: a late extra reload would show below
    app.get("/")


@pytest.mark.parametrize("events", BACKENDS)
def test_a_burst_of_200_writes_gives_one_reload(make_package, events):
    files = {f"mod{i}.py": f"X = {i}\n" for i in range(200)}
    imports = "".join(f"import shop.mod{i}\n" for i in range(200))
    pkg = make_package("shop", {"__init__.py": "", **files, "wsgi.py": imports + APP % "v1"})
    middleware = wrap(events)
    app = TestApp(middleware, lint=True)
    app.get("/")

    # Another process writes, as a checkout does: a thread of this one would
    # wait for the interpreter lock while a reload runs, spreading the burst.
    writer = subprocess.Popen([sys.executable, "-c", BURST, str(pkg)])
    time.sleep(0.01)
    app.get("/")  # arrives mid-burst: waits for the burst to be quiet
    writer.wait(10)
    settle(app, middleware, events, 1)
    assert middleware.stats.reloads == 1
    assert sys.modules["shop.mod199"].X == 200


@pytest.mark.parametrize("events", BACKENDS)
def test_an_atomic_save_gives_one_reload(make_package, events):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    middleware = wrap(events)
    app = TestApp(middleware, lint=True)
    app.get("/")
    tmp = pkg / ".wsgi.py.swp"
    tmp.write_text(APP % "v2")
    os.replace(tmp, pkg / "wsgi.py")
    settle(app, middleware, events, 1)
    assert app.get("/").text == "v2"
    assert middleware.stats.reloads == 1


NOISE = ["wsgi.py~", ".#wsgi.py", ".wsgi.py.swp", "__pycache__/wsgi.cpython-311.pyc",
         ".git/index", "app.log", "data.sqlite3"]


@pytest.mark.parametrize("events", BACKENDS)
@pytest.mark.parametrize("noise", NOISE)
def test_backup_swap_bytecode_and_log_writes_give_no_reload(make_package, events, noise):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    middleware = wrap(events, watch=[str(pkg)])
    app = TestApp(middleware, lint=True)
    app.get("/")
    path = pkg / noise
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("noise")
    # A real change afterwards proves the tracker was looking all along.
    edit(pkg / "wsgi.py", APP % "v2")
    settle(app, middleware, events, 1)
    assert app.get("/").text == "v2"
    assert middleware.stats.reloads == 1
    assert str(path) not in middleware.stats.last.changed


def test_handlers_attached_at_import_do_not_pile_up(make_package, capsys):
    source = (
        "import logging, sys\n"
        "log = logging.getLogger('shop')\n"
        "log.setLevel(logging.INFO)\n"
        "log.addHandler(logging.StreamHandler(sys.stdout))\n"
        "handler = logging.StreamHandler(sys.stdout)\n"
        "handler.setFormatter(logging.Formatter('root %(message)s'))\n"
        "logging.getLogger().addHandler(handler)\n"
    ) + (APP % "v1").replace("body = ", "log.info('served'); logging.warning('warned'); body = ")
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": source})
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False)
    app = TestApp(middleware, lint=True)
    root_handlers = list(logging.getLogger().handlers)
    try:
        app.get("/")
        for n in range(100):
            edit(pkg / "wsgi.py", source + f"# edit {n}\n")
            app.get("/")
        capsys.readouterr()
        app.get("/")
        out = capsys.readouterr().out
        assert out.splitlines() == ["served", "root served", "root warned"]
        assert middleware.stats.reloads == 100
        assert len(logging.getLogger("shop").handlers) == 1
    finally:
        middleware.close()
        for handler in logging.getLogger().handlers[:]:
            if handler not in root_handlers:
                logging.getLogger().removeHandler(handler)
        logging.getLogger("shop").handlers.clear()


THREADED = """\
import threading
STOP = threading.Event()

def poll():
    STOP.wait(30)

worker = threading.Thread(target=poll, name="shop-poller", daemon=True)
worker.start()
{unload}
""" + APP % "v1"


def test_a_thread_left_running_is_reported_by_name(make_package, caplog):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": THREADED.format(unload="")})
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False)
    app = TestApp(middleware, lint=True)
    app.get("/")
    stop = sys.modules["shop.wsgi"].STOP
    try:
        edit(pkg / "wsgi.py", THREADED.format(unload="# edited"))
        with caplog.at_level(logging.WARNING, logger="memento"):
            app.get("/")
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "shop-poller" in warnings[0].getMessage()
        assert "__memento_unload__" in warnings[0].getMessage()
    finally:
        stop.set()
        sys.modules["shop.wsgi"].STOP.set()


def test_a_thread_stopped_by_its_unload_hook_is_not_reported(make_package, caplog):
    unload = "def __memento_unload__():\n    STOP.set()\n    worker.join(5)\n"
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": THREADED.format(unload=unload)})
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False)
    app = TestApp(middleware, lint=True)
    app.get("/")
    edit(pkg / "wsgi.py", THREADED.format(unload=unload + "# edited\n"))
    with caplog.at_level(logging.WARNING, logger="memento"):
        app.get("/")
    assert "still running" not in caplog.text
    sys.modules["shop.wsgi"].STOP.set()


def test_each_reload_logs_generation_files_count_and_time(make_package, caplog):
    pkg = make_package("shop", {"__init__.py": "", "wsgi.py": APP % "v1"})
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False)
    app = TestApp(middleware, lint=True)
    app.get("/")
    edit(pkg / "wsgi.py", APP % "v2")
    with caplog.at_level(logging.INFO, logger="memento"):
        app.get("/")
    message = caplog.records[-1].getMessage()
    assert "reloaded 2 modules in" in message and " ms" in message
    assert "generation 2" in message
    assert "wsgi.py" in message
    assert middleware.stats.generation == 2


REGISTRY = "HANDLERS = {}\n\ndef register(name, fn):\n    HANDLERS[name] = fn\n"
PLUGIN = """\
from shop import registry

def greet():
    return {text!r}

registry.register("greet", greet)

def __memento_unload__():
    registry.HANDLERS.pop("greet", None)
"""
REGISTRY_APP = """\
from shop import plugin, registry

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{len(registry.HANDLERS)} {registry.HANDLERS['greet']()}".encode()]
"""


def test_a_registry_in_a_kept_module_holds_only_the_new_generation(make_package):
    pkg = make_package(
        "shop",
        {"__init__.py": "", "registry.py": REGISTRY, "plugin.py": PLUGIN.format(text="hello"),
         "wsgi.py": REGISTRY_APP},
    )
    middleware = memento.Mori("shop.wsgi:app", interval=0, events=False, keep=["shop.registry"])
    app = TestApp(middleware, lint=True)
    assert app.get("/").text == "1 hello"
    for text in ("hi", "hey", "howdy"):
        edit(pkg / "plugin.py", PLUGIN.format(text=text))
        assert app.get("/").text == f"1 {text}"
