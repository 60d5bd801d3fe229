"""The blueprint and its views."""

from __future__ import annotations

from flask import Blueprint, render_template

from . import models

bp = Blueprint("shop", __name__)

TITLE = "Fruit"


@bp.route("/")
def index() -> str:
    return render_template("index.html", title=TITLE, products=models.all_products())


@bp.route("/api/products")
def products() -> dict[str, int]:
    return {product.name: product.price for product in models.all_products()}
