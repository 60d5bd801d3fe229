"""A tiny application to watch memento reload: edit views.py and refresh."""
