"""A Falcon application: a ``falcon.App`` and its resources.

Serve it with reloading::

    memento --app-dir examples falcon_app.wsgi:app
"""
