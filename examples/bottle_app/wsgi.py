"""The WSGI entry point: ``bottle_app.wsgi:app``."""

from .routes import app

__all__ = ["app"]
