"""``python manage.py runserver``, served through memento.

The project's code reloads in the running process (see the README, "Django");
what Django's app registry holds restarts the command, keeping its listening
socket. ``--noreload`` serves without reloading. Static files are served as
Django's own ``runserver`` serves them in DEBUG (``--nostatic``,
``--insecure``).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import CommandError

from memento import cli
from memento.mori import Mori

if apps.is_installed("django.contrib.staticfiles"):
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.contrib.staticfiles.management.commands.runserver import (
        Command as BaseCommand,
    )
else:  # pragma: no cover - a project without staticfiles
    from django.core.management.commands.runserver import (  # type: ignore[assignment]
        Command as BaseCommand,
    )

    StaticFilesHandler = None  # type: ignore[assignment,misc]


class Command(BaseCommand):
    help = "Serve the project; code edits are reloaded in the running process by memento."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--server", choices=("auto", "waitress", "wsgiref"), default="auto",
            help="the WSGI server (auto: waitress when installed)",
        )  # fmt: skip
        parser.add_argument("--threads", type=int, default=8, help="the server's threads")

    def run(self, **options: Any) -> None:
        try:
            server_class = cli.choose_server(options["server"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["threads"] < 1:
            raise CommandError(f"--threads: expected a number >= 1, got {options['threads']!r}")
        cli.configure_logging(options["verbosity"] > 1, only_memento=True)
        app = Mori(wsgi_statement(), turn_on=options["use_reloader"])
        listen = cli.Listen(self.addr, int(self.port), server_class, options["threads"])
        status = cli.run_server(
            app,
            listen,
            restart_command(),
            handler=self.static_handler(app, **options),
            # The checks import the URLconf: after the application was loaded,
            # so that what the app registry holds is told from what reloads.
            loaded=lambda: self.checks(**options),
        )
        if status:
            raise CommandError(f"memento exited with status {status}", returncode=status)

    def checks(self, **options: Any) -> None:
        """The system and migration checks ``runserver`` runs before serving."""
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()

    def static_handler(self, app: Mori, **options: Any) -> Any:
        """``app``, behind Django's static files handler as ``runserver`` puts it."""
        static = options.get("use_static_handler", False)
        if StaticFilesHandler is not None and static and (
            settings.DEBUG or options.get("insecure_serving")
        ):
            return StaticFilesHandler(app)
        return app


def wsgi_statement() -> str:
    """The project's WSGI application as memento names it: ``WSGI_APPLICATION``."""
    return settings.WSGI_APPLICATION or "django.core.wsgi:get_wsgi_application()"


def restart_command() -> list[str]:
    """The command line that started this process, as Django's autoreloader runs it again."""
    from django.utils.autoreload import get_child_arguments

    return [str(argument) for argument in get_child_arguments()]
