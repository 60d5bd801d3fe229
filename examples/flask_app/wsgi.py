"""The WSGI entry point for servers that want a module attribute: ``flask_app.wsgi:app``."""

from . import create_app

app = create_app()
