"""A Flask application factory with a blueprint, a Jinja template and a model.

Serve it with reloading, templates included::

    memento --app-dir examples --watch examples/flask_app/templates 'flask_app:create_app()'
"""

from __future__ import annotations

from flask import Flask


def create_app() -> Flask:
    """Build the application; memento calls it again after each reload."""
    app = Flask(__name__)
    # Imported here, not at the top: the blueprint and its views are created
    # anew with every generation of the code, so registering them is clean.
    from .views import bp

    app.register_blueprint(bp)
    return app
