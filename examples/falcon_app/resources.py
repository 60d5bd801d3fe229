"""Falcon resources: one instance per route, made by ``wsgi.py``."""

from __future__ import annotations

import falcon

UNIT = "kg"


class StockResource:
    """The stock, in memory: a new generation of the code starts it afresh."""

    def __init__(self) -> None:
        self.stock = {"apple": 3, "pear": 4}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {name: f"{amount} {UNIT}" for name, amount in self.stock.items()}


class ItemResource:
    def __init__(self, stock: StockResource) -> None:
        self.stock = stock

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name not in self.stock.stock:
            raise falcon.HTTPNotFound(title=f"no {name}")
        resp.media = {"name": name, "amount": f"{self.stock.stock[name]} {UNIT}"}

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.stock.stock[name] = int(req.get_media()["amount"])
        resp.status = falcon.HTTP_204
