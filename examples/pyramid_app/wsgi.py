"""The WSGI entry point: ``pyramid_app.wsgi:app``."""

from . import main

app = main({})
