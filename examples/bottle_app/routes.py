"""The routes, on an application object of our own (never ``bottle.default_app()``)."""

from __future__ import annotations

import os

import bottle

from . import stock

VIEWS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "views")

app = bottle.Bottle()


@app.route("/")
def index() -> str:
    return bottle.template("index", items=stock.ITEMS, template_lookup=[VIEWS])


@app.route("/hello/<name>")
def hello(name: str) -> str:
    return f"Hello, {name}!"
