"""Views registered by ``config.scan()``."""

from __future__ import annotations

from pyramid.request import Request
from pyramid.view import view_config

GREETING = "Hello"


@view_config(route_name="home", renderer="json")
def home(request: Request) -> dict[str, str]:
    return {"greeting": GREETING}


@view_config(route_name="hello", renderer="string")
def hello(request: Request) -> str:
    return f"{GREETING}, {request.matchdict['name']}!"
