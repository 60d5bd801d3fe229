"""A Bottle application with its own ``Bottle()`` object and a template.

Serve it with reloading, templates included::

    memento --app-dir examples --watch examples/bottle_app/views bottle_app.wsgi:app
"""
