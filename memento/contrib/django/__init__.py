"""A Django app whose ``runserver`` serves the project through memento.

Put ``"memento.contrib.django"`` first in ``INSTALLED_APPS`` (before
``django.contrib.staticfiles``, whose own ``runserver`` would win otherwise).
"""
