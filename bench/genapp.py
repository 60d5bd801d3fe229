"""Generate a synthetic WSGI application package for the benchmarks.

The package has ``n`` user modules in three layers, ``models`` imported by
``services`` imported by ``views``, plus ``wsgi.py`` (the application) and
one leaf module ``marker.py`` holding ``MARKER``, which ``/`` shows. The
marker is imported by a model at the bottom of a short chain of models
(``models/m000`` <- ``m001`` <- ``m002``), reached from the index view
through one service: editing it touches a handful of modules, not the whole
package. Every other import goes down the layers at random (seeded), so the
package is a realistic import graph rather than a star.

Two flavours: ``plain`` (a hand-written WSGI dispatcher) and ``flask`` (a
Flask application whose view functions each view module registers).

Usage: ``python bench/genapp.py DIR --n 500 --flavour flask``.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

FLAVOURS = ("plain", "flask")
#: The chain of models from the marker up to the index view.
CHAIN = ("m000", "m001", "m002")
MARKER_RE = re.compile(r"MARKER=([A-Za-z0-9_.-]+);")


@dataclass(frozen=True)
class AppInfo:
    """Where a generated application lives and what editing its marker touches."""

    root: str  # the directory to put on sys.path
    package: str
    flavour: str
    modules: int  # user modules, packages included
    marker: str  # path of marker.py
    statement: str  # resolver statement of the WSGI application
    dependents: tuple[str, ...]  # modules that import the marker, transitively

    @property
    def marker_path(self) -> Path:
        return Path(self.marker)


# -- module templates --------------------------------------------------------------

MODEL = '''\
"""Model {name}: records, their states and the queries the services run."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
from decimal import Decimal

{imports}

TABLE = "{name}"
FIELDS = ("id", "name", "slug", "price", "created", "status", "tags")
DEFAULTS = {{"price": Decimal("{price}.00"), "currency": "EUR", "page_size": {page}}}
_SLUG = re.compile(r"[^a-z0-9]+")
_INDEXES = {{field: position for position, field in enumerate(FIELDS)}}


class Status{cls}(enum.Enum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"

    @property
    def visible(self) -> bool:
        return self is not Status{cls}.ARCHIVED


@dataclasses.dataclass(frozen=True)
class Record{cls}:
    id: int
    name: str
    price: Decimal = DEFAULTS["price"]
    created: datetime.date = datetime.date(2024, 1, {day})
    status: Status{cls} = Status{cls}.DRAFT
    tags: tuple = ()

    @property
    def slug(self) -> str:
        return _SLUG.sub("-", self.name.lower()).strip("-")

    def with_status(self, status: Status{cls}) -> Record{cls}:
        return dataclasses.replace(self, status=status)

    def as_row(self) -> tuple:
        return (self.id, self.name, self.slug, self.price, self.created,
                self.status.value, self.tags)


class Query{cls}:
    """A tiny in-memory query builder over :class:`Record{cls}`."""

    def __init__(self, rows: list[Record{cls}] | None = None) -> None:
        self.rows = list(rows or [])
        self.filters: list = []

    def where(self, **equals: object) -> Query{cls}:
        query = Query{cls}(self.rows)
        query.filters = self.filters + [lambda row: all(
            getattr(row, key) == value for key, value in equals.items())]
        return query

    def visible(self) -> Query{cls}:
        query = Query{cls}(self.rows)
        query.filters = self.filters + [lambda row: row.status.visible]
        return query

    def all(self) -> list[Record{cls}]:
        return [row for row in self.rows if all(test(row) for test in self.filters)]

    def page(self, number: int) -> list[Record{cls}]:
        size = DEFAULTS["page_size"]
        return self.all()[number * size:(number + 1) * size]


def sample(count: int = 3) -> list[Record{cls}]:
    return [Record{cls}(id=index, name=f"{name} item {{index}}")
            for index in range(count)]


def describe() -> str:
    related = [{related}]
    return f"{name}({{len(FIELDS)}} fields, {{len(related)}} related)"


def banner() -> str:
    return {banner}


REGISTRY = {{status.value: [] for status in Status{cls}}}
SAMPLE = sample()
'''

SERVICE = '''\
"""Service {name}: business rules over several models."""

from __future__ import annotations

import functools
import itertools
import logging
from collections import defaultdict

{imports}

log = logging.getLogger(__name__)
RETRIES = {retries}
LIMITS = {{"per_page": {page}, "max_items": {page} * 10}}


class {cls}Error(Exception):
    """Raised when the {name} rules reject an operation."""


class {cls}Service:
    """Coordinates {count} models."""

    models = ({model_refs},)

    def __init__(self, user: str = "anonymous") -> None:
        self.user = user
        self.counters: defaultdict[str, int] = defaultdict(int)

    def overview(self) -> list[str]:
        self.counters["overview"] += 1
        return [model.describe() for model in self.models]

    def search(self, term: str) -> list[str]:
        term = term.lower()
        found = (model.describe() for model in self.models)
        return [text for text in found if term in text.lower()][:LIMITS["per_page"]]

    def batches(self, size: int = 2) -> list[tuple]:
        iterator = iter(self.models)
        return list(iter(lambda: tuple(itertools.islice(iterator, size)), ()))

    def check(self, amount: int) -> int:
        if amount > LIMITS["max_items"]:
            raise {cls}Error(f"{{amount}} items is over the limit")
        return amount


@functools.lru_cache(maxsize=32)
def cached_overview() -> tuple[str, ...]:
    return tuple({cls}Service().overview())


def banner() -> str:
    return {banner}


DEFAULT = {cls}Service()
'''

VIEW = '''\
"""Views {name}: pages rendered from services and models."""

from __future__ import annotations

import html
import json

{imports}

TITLE = "{name}"
TEMPLATE = """<!doctype html>
<html><head><title>{{title}}</title></head>
<body><h1>{{title}}</h1>{{body}}<footer>{{footer}}</footer></body></html>"""


def render(title: str, body: str, footer: str = "") -> str:
    return TEMPLATE.format(
        title=html.escape(title), body=body, footer=html.escape(footer)
    )


def listing() -> str:
    items = "".join(f"<li>{{html.escape(text)}}</li>" for text in overview())
    return render(TITLE + " list", f"<ul>{{items}}</ul>")


def detail() -> str:
    data = {{"view": TITLE, "items": len(overview())}}
    return render(TITLE + " detail", json.dumps(data))


def overview() -> list[str]:
    return [*{svc_overviews}, *({model_describes})]

{index}
{routing}
'''

INDEX = """
def index() -> str:
    return render("home", "<p>MARKER=" + {banner} + ";</p>", footer=TITLE)
"""

PLAIN_ROUTING = """
ROUTES = {{{routes}}}
"""

FLASK_ROUTING = """
def register(app) -> None:
{rules}
"""

PLAIN_WSGI = '''\
"""The WSGI application: dispatch on the path to the views' functions."""

from __future__ import annotations

from .views import {views}

ROUTES: dict = {{}}
for _view in ({views},):
    ROUTES.update(_view.ROUTES)


def app(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO") or "/")
    if handler is None:
        status, body = "404 Not Found", "not found"
    else:
        status, body = "200 OK", handler()
    data = body.encode("utf-8")
    start_response(status, [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(data))),
    ])
    return [data]
'''

FLASK_WSGI = '''\
"""The WSGI application: a Flask application the views register on."""

from __future__ import annotations

from flask import Flask

from .views import {views}

app = Flask(__name__)
for _view in ({views},):
    _view.register(app)
'''

MARKER = '''\
"""The value the home page shows; the benchmarks rewrite this file."""

MARKER = {value!r}
'''


# -- the generator -----------------------------------------------------------------


def layer_sizes(n: int) -> tuple[int, int, int]:
    """Models, services and views for ``n`` user modules in all."""
    fixed = 6  # the package, its three subpackages, marker, wsgi
    rest = max(n - fixed, 3 + len(CHAIN))
    models = max(rest // 2, len(CHAIN) + 1)
    services = max((rest - models) // 2, 1)
    views = max(rest - models - services, 1)
    return models, services, views


def generate(
    directory: Path | str,
    package: str,
    n: int,
    flavour: str = "plain",
    *,
    marker: str = "initial",
    seed: int = 7,
    compile_bytecode: bool = True,
) -> AppInfo:
    """Write the package ``package`` with ``n`` user modules under ``directory``.

    ``directory`` is what goes on ``sys.path``; an existing package of the
    same name there is replaced. Bytecode is compiled up front, as a served
    application would have it after its first start.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour: expected one of {', '.join(FLAVOURS)}, got {flavour!r}")
    root = Path(directory).resolve()
    pkg = root / package
    if pkg.exists():
        shutil.rmtree(pkg)
    rng = random.Random(seed)
    models, services, views = layer_sizes(n)
    model_names = [f"m{i:03d}" for i in range(models)]
    service_names = [f"s{i:03d}" for i in range(services)]
    view_names = [f"v{i:03d}" for i in range(views)]
    files = {
        "__init__.py": f'"""Synthetic application ({flavour}, {n} modules)."""\n'
        '\nVERSION = "1.0"\n',
        "models/__init__.py": '"""Records and queries."""\n',
        "services/__init__.py": '"""Business rules."""\n',
        "views/__init__.py": '"""Pages."""\n',
        "marker.py": MARKER.format(value=marker),
    }
    imported: set[str] = set()
    for index, name in enumerate(model_names):
        files[f"models/{name}.py"] = model_source(name, index, model_names, rng, imported)
    # Every model is imported by something: orphans go to the services.
    orphans = [name for name in model_names if name not in imported and name not in CHAIN]
    for index, name in enumerate(service_names):
        files[f"services/{name}.py"] = service_source(
            name, index, model_names, orphans[index::services], rng
        )
    used: set[str] = set()
    for index, name in enumerate(view_names):
        files[f"views/{name}.py"] = view_source(
            name, index, model_names, service_names, flavour, rng, used
        )
    # And every service by some view: the last view takes those left over.
    left = [name for name in service_names if name not in used]
    if left:
        files[f"views/{view_names[-1]}.py"] = view_source(
            view_names[-1],
            len(view_names) - 1,
            model_names,
            service_names,
            flavour,
            random.Random(seed),
            used,
            extra=tuple(left),
        )
    wsgi = PLAIN_WSGI if flavour == "plain" else FLASK_WSGI
    files["wsgi.py"] = wsgi.format(views=", ".join(view_names))
    for relpath, source in files.items():
        path = pkg / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    if compile_bytecode:
        compileall.compile_dir(str(pkg), quiet=1)
    importlib.invalidate_caches()
    dependents = (
        f"{package}.marker",
        *(f"{package}.models.{name}" for name in CHAIN),
        f"{package}.services.{service_names[0]}",
        f"{package}.views.{view_names[0]}",
        f"{package}.wsgi",
    )
    return AppInfo(
        root=str(root),
        package=package,
        flavour=flavour,
        modules=len(files),
        marker=str(pkg / "marker.py"),
        statement=f"{package}.wsgi:app",
        dependents=dependents,
    )


def model_source(
    name: str, index: int, names: list[str], rng: random.Random, imported: set[str]
) -> str:
    imports, refs = [], []
    if name == CHAIN[0]:
        imports.append("from ..marker import MARKER")
        banner = "MARKER"
    elif name in CHAIN:
        below = CHAIN[CHAIN.index(name) - 1]
        imports.append(f"from . import {below}")
        refs.append(below)
        banner = f"{below}.banner()"
    else:
        banner = repr(name)
    # Only models below this one (never the chain, so its importers stay few).
    pool = [other for other in names[:index] if other not in CHAIN]
    for other in rng.sample(pool, min(len(pool), rng.randint(0, 3))):
        imported.add(other)
        if rng.random() < 0.5:
            imports.append(f"from . import {other}")
            refs.append(other)
        else:
            imports.append(f"from .{other} import Record{other.title()}")
            refs.append(f"Record{other.title()}")
    related = ", ".join(f"{ref}.describe()" if ref.islower() else f"{ref}.__name__" for ref in refs)
    return MODEL.format(
        name=name,
        cls=name.title(),
        imports="\n".join(sorted(imports)) or "# no related models",
        price=rng.randint(5, 500),
        page=rng.choice((10, 20, 25, 50)),
        day=rng.randint(1, 28),
        related=related,
        banner=banner,
    )


def service_source(
    name: str, index: int, models: list[str], extra: list[str], rng: random.Random
) -> str:
    if index == 0:
        chosen = [CHAIN[-1]]
        banner = f"{CHAIN[-1]}.banner()"
    else:
        banner = repr(name)
        chosen = []
    pool = [model for model in models if model not in CHAIN and model not in extra]
    chosen += extra + rng.sample(pool, min(len(pool), rng.randint(2, 5)))
    imports = [f"from ..models import {', '.join(sorted(chosen))}"]
    return SERVICE.format(
        name=name,
        cls=name.title(),
        imports="\n".join(imports),
        retries=rng.randint(1, 5),
        page=rng.choice((10, 20, 50)),
        count=len(chosen),
        model_refs=", ".join(chosen),
        banner=banner,
    )


def view_source(
    name: str,
    index: int,
    models: list[str],
    services: list[str],
    flavour: str,
    rng: random.Random,
    used: set[str],
    extra: tuple[str, ...] = (),
) -> str:
    svc_pool = [svc for svc in services[1:] or services if svc not in extra]
    chosen_services = rng.sample(svc_pool, min(len(svc_pool), rng.randint(1, 3)))
    if index == 0:
        chosen_services = [
            services[0],
            *[s for s in chosen_services if s != services[0]],
        ]
    chosen_services += list(extra)
    used.update(chosen_services)
    model_pool = [model for model in models if model not in CHAIN]
    chosen_models = rng.sample(model_pool, min(len(model_pool), rng.randint(2, 4)))
    imports = [
        f"from ..models import {', '.join(sorted(chosen_models))}",
        f"from ..services import {', '.join(sorted(chosen_services))}",
    ]
    routes = {f"/{name}/list": "listing", f"/{name}/detail": "detail"}
    index_src = ""
    if index == 0:
        index_src = INDEX.format(banner=f"{services[0]}.banner()")
        routes = {"/": "index", **routes}
    if flavour == "plain":
        routing = PLAIN_ROUTING.format(
            routes=", ".join(f"{path!r}: {func}" for path, func in routes.items())
        )
    else:
        routing = FLASK_ROUTING.format(
            rules="\n".join(
                f"    app.add_url_rule({path!r}, {name + '.' + func!r}, {func})"
                for path, func in routes.items()
            )
        )
    return VIEW.format(
        name=name,
        imports="\n".join(imports),
        svc_overviews=", *".join(f"{svc}.DEFAULT.overview()" for svc in chosen_services),
        model_describes="".join(f"{model}.describe(), " for model in chosen_models),
        index=index_src,
        routing=routing,
    )


# -- the Flask-SQLAlchemy shape (issue 11) ------------------------------------------

#: The name the memory part reports this application under.
SQLA = "flask-sqlalchemy"

SQLA_INIT = """\
\"\"\"A Flask application factory with Flask-SQLAlchemy and Flask-Login.\"\"\"

from flask import Flask
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
login = LoginManager()


def create_app():
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "bench"
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + {db_path!r}
    db.init_app(app)
    login.init_app(app)
    from . import {blueprints}
    for module in ({blueprints},):
        app.register_blueprint(module.bp)
    with app.app_context():
        db.create_all()
        if db.session.scalars(db.select(models.User)).first() is None:
            db.session.add(models.User(name="ann"))
            db.session.commit()
    return app


from . import models  # noqa: E402
"""

SQLA_MODELS = """\
\"\"\"Models; a session listener as full-text search indexing registers it.\"\"\"

from flask_login import UserMixin

from . import db, login


class SearchableMixin:
    @classmethod
    def before_commit(cls, session):
        session._changes = list(session.new)


class User(SearchableMixin, UserMixin, db.Model):
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(64), unique=True)


class Post(SearchableMixin, db.Model):
    id = db.Column(db.Integer, primary_key=True)
    body = db.Column(db.String(140))
    user_id = db.Column(db.Integer, db.ForeignKey("user.id"))


@login.user_loader
def load_user(user_id):
    return db.session.get(User, int(user_id))


db.event.listen(db.session, "before_commit", SearchableMixin.before_commit)
"""

SQLA_BLUEPRINT = """\
\"\"\"Pages that log in, write and query the database.\"\"\"

from flask import Blueprint
from flask_login import current_user, login_user

from . import db
from .marker import MARKER
from .models import Post, User

bp = Blueprint("{name}", __name__, url_prefix="{prefix}")


@bp.route("/")
def index():
    login_user(db.session.scalars(db.select(User).filter_by(name="ann")).one())
    db.session.add(Post(body="{name}", user_id=current_user.id))
    db.session.commit()
    posts = db.session.scalars(db.select(Post).filter_by(user_id=current_user.id)).all()
    return "<p>MARKER=%s;</p><p>%d posts</p>" % (MARKER, len(posts))
"""

SQLA_BLUEPRINTS = ("main", "auth", "blog", "search", "users")


def generate_sqla(
    directory: Path | str, package: str, *, marker: str = "initial", extensions: bool = False
) -> AppInfo:
    """Write the issue 11 application: a factory in the package's ``__init__``,
    five blueprints (``main`` serves ``/``), Flask-SQLAlchemy models with a
    ``before_commit`` session listener, Flask-Login's user loader, a sqlite
    file next to the package; ``wsgi.py`` calls the factory.

    ``extensions``: ``db`` and ``login`` live in ``extensions.py`` (the
    layout Flask's docs suggest for factories), imported from there by the
    package, the models and the blueprints; the statement is then
    ``package:create_app()``, the application's module the package itself."""
    root = Path(directory).resolve()
    pkg = root / package
    if pkg.exists():
        shutil.rmtree(pkg)
    db_path = root / f"{package}.db"
    if db_path.exists():
        db_path.unlink()
    names = ", ".join(SQLA_BLUEPRINTS)
    files = {
        "__init__.py": SQLA_INIT.format(db_path=str(db_path), blueprints=names),
        "models.py": SQLA_MODELS,
        "marker.py": MARKER.format(value=marker),
        "wsgi.py": f"from {package} import create_app\n\napp = create_app()\n",
    }
    for name in SQLA_BLUEPRINTS:
        prefix = "/" if name == "main" else f"/{name}"
        files[f"{name}.py"] = SQLA_BLUEPRINT.format(name=name, prefix=prefix)
    if extensions:
        files = {name: _from_extensions(source) for name, source in files.items()}
        files["extensions.py"] = SQLA_EXTENSIONS
        del files["wsgi.py"]
    for relpath, source in files.items():
        path = pkg / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    compileall.compile_dir(str(pkg), quiet=1)
    importlib.invalidate_caches()
    return AppInfo(
        root=str(root),
        package=package,
        flavour=SQLA,
        modules=len(files),
        marker=str(pkg / "marker.py"),
        statement=f"{package}:create_app()" if extensions else f"{package}.wsgi:app",
        dependents=(
            f"{package}.marker",
            *(f"{package}.{name}" for name in SQLA_BLUEPRINTS),
            package,
            *(() if extensions else (f"{package}.wsgi",)),
        ),
    )


SQLA_EXTENSIONS = """\
\"\"\"The extensions the factory sets up on each application.\"\"\"

from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
login = LoginManager()
"""


def _from_extensions(source: str) -> str:
    """The same module importing ``db`` and ``login`` from ``extensions.py``."""
    source = source.replace(
        "from flask_login import LoginManager\nfrom flask_sqlalchemy import SQLAlchemy\n\n"
        "db = SQLAlchemy()\nlogin = LoginManager()\n",
        "from .extensions import db, login\n",
    )
    source = source.replace("from . import db, login\n", "from .extensions import db, login\n")
    return source.replace("from . import db\n", "from .extensions import db\n")


# -- edits and trees ---------------------------------------------------------------


def write_marker(path: Path | str, value: str) -> None:
    """Rewrite ``marker.py`` atomically (temporary file, then ``os.replace``)."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=".marker-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(MARKER.format(value=value))
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def marker_value(sequence: int) -> str:
    """The ``sequence``-th marker; consecutive markers differ in size too, so
    the bytecode of a restarted interpreter is never stale either."""
    return f"edit-{sequence:06d}-" + "x" * (sequence % 11)


def read_marker(body: str) -> str | None:
    """The marker shown in a ``/`` response, if any."""
    match = MARKER_RE.search(body)
    return match.group(1) if match else None


def make_tree(directory: Path | str, count: int = 10_000, per_dir: int = 100) -> Path:
    """Write ``count`` small Python files under ``directory`` (``per_dir`` a folder)."""
    root = Path(directory).resolve()
    if root.exists() and len(list(root.rglob("*.py"))) == count:
        return root
    if root.exists():
        shutil.rmtree(root)
    for index in range(count):
        folder = root / f"d{index // per_dir:03d}"
        if index % per_dir == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index % per_dir:03d}.py").write_text(
            f'"""Tracked file {index}."""\n\nVALUE = {index}\n', encoding="utf-8"
        )
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="where to write the package (goes on sys.path)")
    parser.add_argument("--n", type=int, default=50, help="user modules (default 50)")
    parser.add_argument("--flavour", choices=FLAVOURS, default="plain")
    parser.add_argument("--package", default=None, help="package name (default app_FLAVOUR_N)")
    args = parser.parse_args(argv)
    package = args.package or f"app_{args.flavour}_{args.n}"
    info = generate(args.directory, package, args.n, args.flavour)
    print(json.dumps(asdict(info), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
