"""The WSGI entry point: ``falcon_app.wsgi:app``."""

from __future__ import annotations

import falcon

from .resources import ItemResource, StockResource


def create_app() -> falcon.App:
    app = falcon.App()
    stock = StockResource()
    app.add_route("/stock", stock)
    app.add_route("/stock/{name}", ItemResource(stock))
    return app


app = create_app()
