"""``memento [options] RESOLVER``: serve an application that reloads itself."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import socketserver
import sys
from collections.abc import Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from . import __version__
from .assassin import Assassin
from .base import ReloadingMiddleware
from .mori import Mori
from .options import RELOAD_ON, SCOPES

log = logging.getLogger("memento")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memento",
        description="Serve a WSGI application and reload its code in process when it changes.",
    )
    parser.add_argument("resolver", help="the application, e.g. myapp.wsgi:app")
    policy = parser.add_argument_group("what a reload forgets")
    policy.add_argument(
        "--assassin", metavar="PKG", action="append", default=[],
        help="forget these packages (repeatable); Assassin instead of Mori",
    )
    policy.add_argument(
        "--except", dest="exceptions", metavar="NAME", action="append", default=[],
        help="with --assassin: never forget this module (repeatable)",
    )
    policy.add_argument(
        "--keep", metavar="NAME", action="append", default=[],
        help="Mori: never forget this module (repeatable)",
    )
    policy.add_argument("--scope", choices=SCOPES, default="all")
    when = parser.add_argument_group("when to reload")
    when.add_argument("--reload-on", choices=RELOAD_ON, default="change")
    when.add_argument("--interval", type=float, default=0.3, metavar="SECONDS")
    when.add_argument(
        "--watch", metavar="PATH", action="append", default=[],
        help="also reload when this file, directory or glob changes (repeatable)",
    )
    when.add_argument("--no-reload", action="store_true", help="serve without reloading")
    serving = parser.add_argument_group("serving")
    serving.add_argument("--host", default="127.0.0.1")
    serving.add_argument("--port", type=int, default=8000)
    serving.add_argument("--server", choices=("auto", "waitress", "wsgiref"), default="auto")
    serving.add_argument("--threads", type=int, default=8, metavar="N")
    serving.add_argument(
        "--app-dir", default=".", metavar="DIR",
        help="put DIR first on sys.path (default: the current directory)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--version", action="version", version=f"memento {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: expected a number >= 1, got {args.threads!r}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: expected 0 to 65535, got {args.port!r}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # watchfiles logs every batch of events at INFO: memento says what matters.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    sys.path.insert(0, os.path.abspath(args.app_dir))
    try:
        app = make_app(args)
    except ValueError as exc:
        parser.error(str(exc))
    serve = choose_server(args.server, parser)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve(app, args.host, args.port, args.threads)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"memento: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        app.close()
    return 0


def make_app(args: argparse.Namespace) -> ReloadingMiddleware:
    """The middleware the arguments describe; ``ValueError`` for bad values."""
    options: dict[str, Any] = {
        "turn_on": not args.no_reload,
        "reload_on": args.reload_on,
        "scope": args.scope,
        "interval": args.interval,
        "watch": args.watch,
    }
    if args.assassin:
        if args.keep:
            raise ValueError("--keep: use --except with --assassin")
        app: ReloadingMiddleware = Assassin(
            args.resolver, args.assassin, args.exceptions, **options
        )
    else:
        if args.exceptions:
            raise ValueError("--except: only with --assassin (use --keep with Mori)")
        app = Mori(args.resolver, keep=args.keep, **options)
    check_module(app.resolver.module, args.resolver)
    return app


def check_module(modname: str, statement: str) -> None:
    """Fail early when the application's module cannot be found at all."""
    try:
        found = importlib.util.find_spec(modname) is not None
    except ModuleNotFoundError as exc:
        found = not (exc.name and modname.startswith(exc.name))
    except Exception:
        # The package exists but fails to import: the error page shows why.
        found = True
    if not found:
        raise ValueError(f"resolver {statement!r}: no module named {modname!r}")


def choose_server(name: str, parser: argparse.ArgumentParser) -> Any:
    has_waitress = importlib.util.find_spec("waitress") is not None
    if name == "waitress" and not has_waitress:
        parser.error("--server waitress: waitress is not installed (pip install 'memento[serve]')")
    if name == "waitress" or (name == "auto" and has_waitress):
        return serve_waitress
    return serve_wsgiref


def serve_waitress(app: Any, host: str, port: int, threads: int) -> None:
    import waitress

    server = waitress.create_server(app, host=host, port=port, threads=threads)
    _say_serving(app, server.effective_host, server.effective_port, "waitress")
    try:
        server.run()
    finally:
        server.close()


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logging.getLogger("memento.server").debug(format, *args)


def serve_wsgiref(app: Any, host: str, port: int, threads: int) -> None:
    with make_server(
        host, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
    ) as server:
        _say_serving(app, *server.server_address[:2], "wsgiref")
        server.serve_forever()


def _say_serving(app: ReloadingMiddleware, host: str, port: int, server: str) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(
        f"memento: serving {app.resolver.statement} on http://{shown}:{port}/ ({server})",
        flush=True,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
