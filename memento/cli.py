"""``memento [options] RESOLVER``: serve an application that reloads itself."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from . import __version__, live, restart
from .assassin import Assassin
from .base import ReloadInfo, ReloadingMiddleware
from .integrations import RestartNeeded
from .modules import snapshot, source_files
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
    when.add_argument(
        "--restart-on", metavar="PATTERN", action="append", default=[],
        help="restart the process, keeping its socket, when this file, directory or glob"
        " changes (repeatable)",
    )
    when.add_argument("--no-reload", action="store_true", help="serve without reloading")
    serving = parser.add_argument_group("serving")
    serving.add_argument("--host", default="127.0.0.1")
    serving.add_argument("--port", type=int, default=8000)
    serving.add_argument("--server", choices=("auto", "waitress", "wsgiref"), default="auto")
    serving.add_argument("--threads", type=int, default=8, metavar="N")
    serving.add_argument(
        "--live", action="store_const", const=True, default=False,
        help="HTML pages refresh themselves in the browser after each reload"
        " (loopback clients)",
    )
    serving.add_argument(
        "--live-all", dest="live", action="store_const", const="all",
        help="as --live, for every client",
    )
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
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    if args.threads < 1:
        return bad_value(f"--threads: expected a number >= 1, got {args.threads!r}")
    if not 0 <= args.port <= 65535:
        return bad_value(f"--port: expected 0 to 65535, got {args.port!r}")
    configure_logging(args.verbose)
    sys.path.insert(0, os.path.abspath(args.app_dir))
    try:
        patterns = restart.as_restart_on(args.restart_on)
        app = make_app(args, restart.restart_modules(patterns))
        server_class = choose_server(args.server)
    except ValueError as exc:
        return bad_value(str(exc))
    return run_server(
        app,
        Listen(args.host, args.port, server_class, args.threads),
        restart.memento_command(arguments),
        patterns=patterns,
        kept=kept_names(app, args),
    )


def bad_value(message: str) -> int:
    """Say what is wrong with a value in one line; returns exit status 2.

    argparse's usage text is for bad flags, not for a resolver that does not import.
    """
    print(f"memento: error: {message}", file=sys.stderr)
    return 2


LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def configure_logging(verbose: bool, *, only_memento: bool = False) -> None:
    """Log to stderr at INFO (DEBUG when ``verbose``).

    ``only_memento``: give the ``memento`` logger a handler of its own and
    leave the others as they are (under a framework that configured logging).
    """
    level = logging.DEBUG if verbose else logging.INFO
    if only_memento:
        logger = logging.getLogger("memento")
        if not any(handler.get_name() == "memento" for handler in logger.handlers):
            handler = logging.StreamHandler()
            handler.set_name("memento")
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    else:
        logging.basicConfig(level=level, format=LOG_FORMAT)
    # watchfiles logs every batch of events at INFO: memento says what matters.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)


class Listen(NamedTuple):
    """Where and how to serve: the address, the server and its threads."""

    host: str
    port: int
    server_class: type[Server]
    threads: int


def run_server(
    app: ReloadingMiddleware,
    listen: Listen,
    command: Sequence[str],
    *,
    handler: Any = None,
    patterns: tuple[str, ...] = (),
    kept: tuple[str, ...] = (),
    loaded: Callable[[], object] | None = None,
) -> int:
    """Serve ``app`` until Ctrl-C or SIGTERM; returns the exit status.

    ``handler``: the WSGI application the server calls, when it wraps ``app``
    (Django's static files handler). An edit that only a restart serves
    (``patterns``, the ``kept`` module names, what the framework holds)
    runs ``command`` (the interpreter and its arguments) in place of this
    process, handing it the listening socket. ``loaded()`` runs once the
    application is imported, before the first connection is accepted.
    """
    try:
        inherited = restart.inherited_socket()
        handoff = restart.inherited_handoff()
    except ValueError as exc:
        return bad_value(str(exc))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if inherited is None:
            inherited = restart.listening_socket(listen.host, listen.port)
        with inherited as sock:
            watcher = serve(app, sock, listen, handler or app, (patterns, kept), loaded, handoff)
            if watcher is not None:
                app.close()
                return run_again(command, sock, watcher.hand_off())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"memento: cannot serve on {listen.host}:{listen.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        app.close()
    return 0


def serve(
    app: ReloadingMiddleware,
    sock: socket.socket,
    listen: Listen,
    handler: Any,
    restarts: tuple[tuple[str, ...], tuple[str, ...]],
    loaded: Callable[[], object] | None,
    handoff: restart.Handoff | None = None,
) -> restart.RestartWatcher | None:
    """Serve on ``sock`` until Ctrl-C (``KeyboardInterrupt``) or a change that needs a restart.

    Returns the watcher that saw a change calling for a restart, or ``None``.
    The application is loaded before the first connection is accepted:
    import errors show at once, the restart watcher needs its modules, and
    a restarted process answers the connections waiting in the backlog
    sooner. ``restarts``: the ``--restart-on`` patterns and the kept module
    names. ``handoff``: what the previous process saw, when this one
    restarted; what was edited since is reloaded, or restarted again.
    """
    started_ns = time.time_ns()
    load(app, None if handoff is None else handoff.since_ns())
    if loaded is not None:
        loaded()
    patterns, kept = restarts
    server = listen.server_class(handler, sock, listen.threads, app.options.drain_timeout)
    held = held_files(app)
    if not (kept or patterns or held):
        _say_serving(app, *server.address, server.name)
        server.serve()
        return None
    watcher = restart.RestartWatcher(
        server.stop, (*patterns, *held), kept, interval=app.options.interval
    )
    with watcher:
        app.after_reload(lambda info: restart_after(watcher, info))
        watcher.start(since_ns=started_ns, handoff=handoff)
        # announced once everything is up: a Ctrl-C from now on ends the server
        _say_serving(app, *server.address, server.name)
        server.serve()
    return watcher if watcher.changed else None


def held_files(app: ReloadingMiddleware) -> tuple[str, ...]:
    """The source files of what the framework holds for good (Django's app registry)."""
    if not app.reloading or app.options.reload_on == "manual":
        return ()
    return tuple(sorted(source_files(snapshot(app.held_modules))))


def restart_after(watcher: restart.RestartWatcher, info: ReloadInfo) -> None:
    """After a reload: look for newly imported kept modules, or restart at once
    for an edit the middleware found only a restart serves."""
    if isinstance(info.error, RestartNeeded):
        watcher.restart_for(info.error.paths)
    else:
        watcher.rescan()


def kept_names(app: ReloadingMiddleware, args: argparse.Namespace) -> tuple[str, ...]:
    """The module names whose edits call for a restart: never forgotten, but looked at."""
    if not app.reloading or args.reload_on == "manual":
        return ()
    return tuple(args.exceptions if args.assassin else args.keep)


def run_again(command: Sequence[str], sock: socket.socket, handoff: restart.Handoff) -> int:
    """Run ``command`` on ``sock``; returns only when that fails (exit status 1)."""
    try:
        restart.reexec(command, sock, handoff)
    except OSError as exc:
        print(f"memento: cannot restart {sys.executable!r}: {exc}", file=sys.stderr)
    return 1


def load(app: ReloadingMiddleware, since_ns: int | None = None) -> None:
    """Import the application now; a failure is logged and shown by the error page.

    Files modified since ``since_ns`` are reloaded on the first request.
    """
    try:
        app.resolve(since_ns=since_ns)
    except Exception:
        pass


def make_app(args: argparse.Namespace, restarted: Sequence[str] = ()) -> ReloadingMiddleware:
    """The middleware the arguments describe; ``ValueError`` for bad values.

    ``restarted``: module names never reloaded in process, since their
    files call for a restart (``--restart-on``).
    """
    options: dict[str, Any] = {
        "turn_on": not args.no_reload,
        "reload_on": args.reload_on,
        "scope": args.scope,
        "interval": args.interval,
        "watch": args.watch,
        "live": args.live,
    }
    if args.assassin:
        if args.keep:
            raise ValueError("--keep: use --except with --assassin")
        app: ReloadingMiddleware = Assassin(
            args.resolver, args.assassin, [*args.exceptions, *restarted], **options
        )
    else:
        if args.exceptions:
            raise ValueError("--except: only with --assassin (use --keep with Mori)")
        app = Mori(args.resolver, keep=[*args.keep, *restarted], **options)
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


def choose_server(name: str) -> type[Server]:
    """The server class for ``--server NAME``; ``ValueError`` when it is not installed."""
    has_waitress = importlib.util.find_spec("waitress") is not None
    if name == "waitress" and not has_waitress:
        raise ValueError(
            "--server waitress: waitress is not installed (pip install 'memento[serve]')"
        )
    if name == "waitress" or (name == "auto" and has_waitress):
        return WaitressServer
    return WsgirefServer


class Server:
    """A WSGI server on a listening socket the command owns.

    :meth:`serve` runs in the main thread until Ctrl-C (``KeyboardInterrupt``)
    or until :meth:`stop` is called from another thread. After :meth:`stop`
    it accepts no more connections (they wait in the socket's backlog) and
    waits at most ``drain_timeout`` seconds for the requests in flight. It
    serves on a duplicate of ``sock``'s descriptor and closes only that.
    """

    name = ""

    def __init__(self, app: Any, sock: socket.socket, threads: int, drain_timeout: float) -> None:
        self.drain_timeout = drain_timeout
        self.address: tuple[str, int] = sock.getsockname()[:2]

    def serve(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


#: A waitress connection without a request for this long (seconds) is idle:
#: a restart closes it rather than wait for its next request.
IDLE_AFTER = 0.5


class WaitressServer(Server):
    """waitress, its loop run a step at a time so that :meth:`stop` can end it."""

    name = "waitress"

    def __init__(self, app: Any, sock: socket.socket, threads: int, drain_timeout: float) -> None:
        import waitress
        from waitress import wasyncore

        super().__init__(app, sock, threads, drain_timeout)
        self._asyncore = wasyncore
        self._map: dict[int, Any] = {}
        self._server = waitress.create_server(
            app, map=self._map, sockets=[sock.dup()], threads=threads
        )
        self.address = (self._server.effective_host, int(self._server.effective_port))
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._closed = False

    def serve(self) -> None:
        try:
            while not self._stopping.is_set():
                self._step(self._server.adj.asyncore_loop_timeout)
            self._drain()
        finally:
            with self._lock:
                self._closed = True
            live.release_all()  # held polls would keep their threads busy
            self._server.task_dispatcher.shutdown()
            self._asyncore.close_all(self._map, ignore_all=True)

    def stop(self) -> None:
        self._stopping.set()
        live.release_all()  # held polls would keep the drain waiting
        with self._lock:
            if not self._closed:
                self._server.pull_trigger()

    def _step(self, timeout: float) -> None:
        adj = self._server.adj
        self._asyncore.loop(timeout, adj.asyncore_use_poll, self._map, count=1)

    def _drain(self) -> None:
        self._server.accepting = False
        deadline = time.monotonic() + self.drain_timeout
        while self._busy() and time.monotonic() < deadline:
            self._step(0.05)
        if self._busy():
            log.warning(
                "%d connections still busy after %.1f s, closing them",
                self._busy(),
                self.drain_timeout,
            )

    def _busy(self) -> int:
        """How many connections have a request under way (or may get one any moment)."""
        idle_since = time.time() - IDLE_AFTER
        return sum(
            bool(
                channel.requests
                or channel.request is not None
                or channel.total_outbufs_len
                or channel.last_activity > idle_since
            )
            for channel in list(self._server.active_channels.values())
        )


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class ListeningWSGIServer(ThreadingWSGIServer):
    """The threaded wsgiref server on a socket already bound and listening.

    It counts the requests in flight, so that :meth:`drain` can wait for them.
    """

    def __init__(self, sock: socket.socket, handler_class: type[WSGIRequestHandler]) -> None:
        self._active = 0
        self._idle = threading.Condition()
        super().__init__(sock.getsockname()[:2], handler_class, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.address_family = sock.family
        self.server_bind()

    def server_bind(self) -> None:
        # no bind(): only what HTTPServer and WSGIServer learn from the address
        self.server_address = self.socket.getsockname()
        host, port = self.server_address[:2]
        self.server_name = socket.getfqdn(host)
        self.server_port = port
        self.setup_environ()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle:
            self._active += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    def drain(self, timeout: float) -> int:
        """Wait at most ``timeout`` seconds for no request to be in flight; how many are left."""
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout)
            return self._active


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logging.getLogger("memento.server").debug(format, *args)


class WsgirefServer(Server):
    """The standard library's server, a thread per request."""

    name = "wsgiref"

    #: How often ``serve_forever()`` looks whether :meth:`stop` was called, in seconds.
    poll_interval = 0.2

    def __init__(self, app: Any, sock: socket.socket, threads: int, drain_timeout: float) -> None:
        super().__init__(app, sock, threads, drain_timeout)
        self._server = ListeningWSGIServer(sock.dup(), QuietHandler)
        self._server.set_app(app)
        self._stopping = threading.Event()

    def serve(self) -> None:
        try:
            self._server.serve_forever(self.poll_interval)
            if self._stopping.is_set():
                left = self._server.drain(self.drain_timeout)
                if left:
                    log.warning(
                        "%d requests still running after %.1f s, leaving them",
                        left,
                        self.drain_timeout,
                    )
        finally:
            self._server.server_close()

    def stop(self) -> None:
        # shutdown() waits for serve_forever() to return: never from its own thread
        self._stopping.set()
        live.release_all()
        self._server.shutdown()


def _say_serving(app: ReloadingMiddleware, host: str, port: int, server: str) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(
        f"memento: serving {app.resolver.statement} on http://{shown}:{port}/ ({server})",
        flush=True,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
