"""``flask --app APP memento``: serve a Flask application through memento.

The application is found exactly as ``flask run`` finds it (``--app``,
``FLASK_APP``, ``.flaskenv``, a ``wsgi.py`` or ``app.py``, an ``app`` or
``application`` object, a ``create_app`` or ``make_app`` factory) and served
by the ``memento`` command's servers instead of werkzeug's restarting
reloader: edits reload in the running process.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

import click
from flask.cli import NoAppException, ScriptInfo, locate_app, pass_script_info, prepare_import

from .. import cli
from ..leaks import unhook
from ..modules import forget, user_modules
from ..mori import Mori

__all__ = ["memento_command", "statement"]


@click.command("memento", help="Serve the application; edits reload in the running process.")
@click.option("--host", "-h", default="127.0.0.1", show_default=True, help="The interface.")
@click.option("--port", "-p", default=5000, show_default=True, help="The port.")
@click.option("--debug/--no-debug", default=None, help="Set the applications' debug flag.")
@click.option(
    "--server",
    type=click.Choice(["auto", "waitress", "wsgiref"]),
    default="auto",
    show_default=True,
    help="auto: waitress when installed.",
)
@click.option("--threads", default=8, show_default=True, help="The server's threads.")
@click.option("--no-reload", is_flag=True, help="Serve without reloading.")
@pass_script_info
def memento_command(
    info: ScriptInfo,
    host: str,
    port: int,
    debug: bool | None,
    server: str,
    threads: int,
    no_reload: bool,
) -> None:
    cli.configure_logging(False, only_memento=True)
    try:
        found = statement(info)
        server_class = cli.choose_server(server)
    except (NoAppException, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    if threads < 1:
        raise click.BadParameter(f"expected a number >= 1, got {threads!r}", param_hint="--threads")
    app = Mori(found, turn_on=not no_reload)
    if debug is not None:
        app.after_reload(lambda reloaded: set_debug(app, debug))
    status = cli.run_server(
        app,
        cli.Listen(host, port, server_class, threads),
        restart_command(),
        loaded=None if debug is None else lambda: set_debug(app, debug),
    )
    if status:
        sys.exit(status)


def statement(info: ScriptInfo) -> str:
    """The resolver statement of the application ``flask run`` would serve.

    Finding it imports the application's module; what that imported is
    forgotten again, so that memento's snapshot, taken after, leaves it out.
    Raises flask's ``NoAppException`` as ``flask run`` would.
    """
    if info.app_import_path:
        path, name = (re.split(r":(?![\\/])", info.app_import_path, maxsplit=1) + [None])[:2]
        candidates = [(prepare_import(path), name)]
    else:
        candidates = [(prepare_import(path), None) for path in ("wsgi.py", "app.py")]
    before = set(sys.modules)
    try:
        for module_name, name in candidates:
            app = locate_app(module_name, name, raise_if_not_found=bool(info.app_import_path))
            if app is not None:
                return f"{module_name}:{name}" if name else _named(module_name, app)
    finally:
        # as a reload forgets a generation: its hooks and registrations go too
        probe = user_modules({name: sys.modules[name] for name in set(sys.modules) - before})
        forget(probe)
        unhook(probe)
    raise NoAppException(
        "Could not locate a Flask application. Use the 'flask --app' option, 'FLASK_APP'"
        " environment variable, or a 'wsgi.py' or 'app.py' file in the current directory."
    )


def _named(module_name: str, app: object) -> str:
    """How ``module_name`` holds ``app``: an attribute, or a factory called without arguments."""
    module = sys.modules[module_name]
    for attr, value in vars(module).items():
        if value is app:
            return f"{module_name}:{attr}"
    for attr in ("create_app", "make_app"):
        if inspect.isfunction(getattr(module, attr, None)):
            return f"{module_name}:{attr}()"
    raise NoAppException(f"cannot tell how module {module_name!r} makes its application")


def set_debug(middleware: Mori, debug: bool) -> None:
    """Set the debug flag of the application served now, as ``flask run --debug`` does."""
    try:
        app: Any = middleware.resolve()
    except Exception:  # the error page shows why it does not load
        return
    app.debug = debug


def restart_command() -> list[str]:
    """The command line that started this process, as werkzeug's reloader runs it again."""
    try:
        from werkzeug._reloader import _get_args_for_reloading
    except ImportError:  # pragma: no cover - a werkzeug without it
        return [sys.executable, *sys.argv]
    return [str(argument) for argument in _get_args_for_reloading()]
