"""Render memento's error page for a realistic failure and take a screenshot.

A small ``shop`` project whose ``views.py`` holds a syntax error is imported
the way a reload imports it; the page shown to a loopback client is written
next to the screenshot and opened with headless Chromium::

    python tests/render_errorpage.py              # writes docs/errorpage.png
    python tests/render_errorpage.py out.png --width 1200 --height 1240
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from chromium import BROWSERS, find_browser  # noqa: E402
from chromium import FLAGS as BROWSER_FLAGS  # noqa: E402

from memento import errorpage  # noqa: E402
from memento.resolver import resolve  # noqa: E402

SHOP = {
    "__init__.py": '"""A small shop."""\n',
    "models.py": """\
        class Product:
            def __init__(self, name, price):
                self.name = name
                self.price = price

            @classmethod
            def all(cls):
                return [cls("Teapot", 18), cls("Cup", 6)]
        """,
    "views.py": """\
        from shop.models import Product


        def render(template, context):
            return f"{template}: {context}".encode()


        def product_list(request):
            products = Product.all()
            return render("products.html" {"products": products})
        """,
    "wsgi.py": """\
        from shop import views


        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/html")])
            return [views.product_list(environ)]
        """,
}


def screenshot(
    page: Path,
    output: Path,
    *,
    width: int = 1200,
    height: int = 900,
    timeout: float = 90,
) -> None:
    """Open ``page`` in headless Chromium and save what it shows to ``output``.

    Raises ``RuntimeError`` when no browser is found or it fails, and
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds.
    """
    browser = find_browser()
    if browser is None:
        raise RuntimeError(f"no browser found, tried {', '.join(BROWSERS)}")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="memento-chromium-") as profile:
        command = [
            browser,
            *BROWSER_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={output.resolve()}",
            page.resolve().as_uri(),
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout
        )
    if result.returncode != 0 or not output.is_file():
        raise RuntimeError(
            f"{browser} exited with status {result.returncode}:\n{result.stderr}"
        )


def failing_reload(project: Path) -> BaseException:
    """Write the ``shop`` package into ``project`` and import it; return the error."""
    for name, source in SHOP.items():
        path = project / "shop" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    sys.path.insert(0, str(project))
    importlib.invalidate_caches()
    try:
        resolve("shop.wsgi:app")
    except Exception as exc:
        return exc
    finally:
        sys.path.remove(str(project))
        for name in [name for name in sys.modules if name.partition(".")[0] == "shop"]:
            del sys.modules[name]
    raise RuntimeError("the shop package imported without error")


def render_page(project: Path) -> bytes:
    """The HTML error page a loopback client sees for the broken ``shop``."""
    error = failing_reload(project)
    changed = [str(project / "shop" / "views.py")]
    _, _, body = errorpage.render(
        error, changed, html=True, show_traceback=True, generation=7
    )
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output", nargs="?", default=str(ROOT / "docs" / "errorpage.png")
    )
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1240)
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args(argv)
    output = Path(args.output)
    with tempfile.TemporaryDirectory(prefix="memento-errorpage-") as workdir:
        project = Path(workdir) / "myproject"
        page = Path(workdir) / "errorpage.html"
        page.write_bytes(render_page(project))
        screenshot(
            page, output, width=args.width, height=args.height, timeout=args.timeout
        )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
