"""A WSGI application without a framework, configured by ``settings.json``.

Serve it with reloading, the settings file included::

    memento --app-dir examples --watch examples/plain_app/settings.json plain_app.wsgi:app
"""
