"""The shop's data, kept in a module so that an edit of it is a reload."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    name: str
    price: int


PRODUCTS = (Product("apple", 3), Product("pear", 4))


def all_products() -> tuple[Product, ...]:
    return PRODUCTS
