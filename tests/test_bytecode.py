"""Stale bytecode is never served, with bytecode writing on as users have it."""

from __future__ import annotations

from helpers import run_python

SCRIPT = """\
import importlib, os, sys
from pathlib import Path
sys.path.insert(0, os.getcwd())
assert not sys.dont_write_bytecode
from webtest import TestApp
import memento

APP = '''def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s"]
'''
pkg = Path("shop")
pkg.mkdir()
(pkg / "__init__.py").write_text("")
wsgi = pkg / "wsgi.py"
second = (os.stat(".").st_mtime_ns // 10**9 - 5) * 10**9

def write(version, offset_ms):
    wsgi.write_text(APP % version)
    os.utime(wsgi, ns=(second, second + offset_ms * 10**6))

write("v1", 100)
{body}
"""

MEMENTO = """\
app = TestApp(memento.Mori("shop.wsgi:app", interval=0, events=False), lint=True)
assert app.get("/").text == "v1"
assert os.path.exists(importlib.util.cache_from_source(str(wsgi.resolve())))
write("v2", 400)
assert app.get("/").text == "v2", "stale bytecode served"
write("v3", 800)
assert app.get("/").text == "v3", "stale bytecode served"
print("fresh")
"""

# Real writes, no backdating: both within one wall-clock second, after the
# first edit's bytecode was written.
MANUAL = """\
import time
while time.time() % 1 > 0.5:
    time.sleep(0.01)
wsgi.write_text(APP % "v1")
mori = memento.Mori("shop.wsgi:app", reload_on="manual")
app = TestApp(mori, lint=True)
assert app.get("/").text == "v1"
wsgi.write_text(APP % "v2")
mori.reload()
assert app.get("/").text == "v2", "stale bytecode served"
print("fresh")
"""

NAIVE = """\
import shop.wsgi
write("v2", 400)
del sys.modules["shop.wsgi"]
importlib.invalidate_caches()
import shop.wsgi
print(b"".join(shop.wsgi.app({}, lambda *a: None)).decode())
"""


def test_same_second_same_size_edits_are_both_served(tmp_path):
    assert "fresh" in run_python(SCRIPT.replace("{body}", MEMENTO), tmp_path).stdout


def test_a_manual_reload_of_a_same_second_same_size_edit_is_fresh(tmp_path):
    assert "fresh" in run_python(SCRIPT.replace("{body}", MANUAL), tmp_path).stdout


def test_a_naive_reimport_serves_stale_bytecode_here(tmp_path):
    # The control: this environment really writes bytecode that hides the edit.
    assert run_python(SCRIPT.replace("{body}", NAIVE), tmp_path).stdout.strip() == "v1"
