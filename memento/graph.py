"""Who imports whom among the owned modules, for ``scope="dependents"``.

:func:`to_forget` reads each owned module's source with :mod:`ast`,
cross-checks the module objects, and answers with the names to forget, or
``None`` when it cannot tell for sure and everything must be forgotten.

A source file is parsed once per version (its modification time in
nanoseconds, size and inode), the last :data:`CACHE_SIZE` versions kept: the
first call parses every owned module, later ones stat the files and read the
module objects' globals, a few milliseconds for 500 modules.
"""

from __future__ import annotations

import ast
import functools
import importlib.machinery
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import FunctionType, ModuleType
from typing import Callable, Union

from ._compat import stdlib_module_names
from .modules import module_file
from .tracking import Stamp

__all__ = ["cache_info", "to_forget"]

#: Parsed file versions kept; an application with more modules re-reads some.
CACHE_SIZE = 4096

# Calls that import or run code the import statements do not show.
_DYNAMIC_IMPORTS = frozenset(
    {
        "__import__",
        "exec_module",
        "import_module",
        "import_string",
        "load_module",
        "resolve_name",
        "run_module",
        "run_path",
    }
)
_DYNAMIC_CODE = frozenset({"exec", "eval"})
# Built-ins that change their first argument.
_SETTERS = frozenset({"setattr", "delattr"})
# Values that hold no state a module could register into.
_IMMUTABLE = (str, bytes, int, float, complex, bool, type(None), frozenset)

_MISSING = object()

Owners = Mapping[str, ModuleType]
#: A name and the attributes read after it: ``registry.ITEMS.append`` is
#: ``("registry", ("ITEMS", "append"))``.
Chain = tuple[str, tuple[str, ...]]
#: Where an imported name comes from: ``(module, name)`` for ``from module
#: import name``, ``(module, None)`` for ``import module``.
Source = tuple[str, Union[str, None]]


def to_forget(
    generation: Mapping[str, ModuleType],
    changed: Iterable[str],
    app_module: str,
    roots: Iterable[str] = (),
) -> set[str] | None:
    """The names of the owned modules a reload must forget, or ``None`` for all of them.

    ``generation`` maps the names of the modules the middleware owns to the
    module objects, ``changed`` holds the absolute paths of the changed files
    and ``app_module`` names the module of the resolver statement; ``roots``
    name owned modules the framework imports by name, forgotten with it
    (Django's ``ROOT_URLCONF``).

    Forgotten are: each module whose source file changed, the application's
    module, and then, until nothing is added, every owned module that imports
    a forgotten one. A forgotten package does not take its submodules along:
    those that stay are bound on its new module object before its
    ``__init__`` runs (:func:`memento.modules.binding`), as importing them
    would, so ``import pkg.sub; pkg.sub.x`` still works. A forgotten
    submodule does not take its package along either: importing it again
    binds the new module onto the package.

    Module A imports module B when A's source, anywhere in the file (function
    bodies too), has ``import B`` (``import a.b.c`` imports ``a``, ``a.b``
    and ``a.b.c``), ``from B import name``, or ``from P import B`` where
    ``P.B`` is the owned module B (``from P import name`` is an import of
    ``P`` when ``P.name`` is not an owned module); relative imports are read
    against the module's ``__package__``. Besides, A imports B when A's
    globals hold B or a function or class whose ``__module__`` is B (a name
    re-exported from elsewhere), and when A is a Django URLconf that names B
    in ``include("B")``.

    ``None`` when it cannot tell for sure:

    * a changed path is not the source file of an owned module (a new or
      deleted module, a ``watch`` file, a module that is not owned), or the
      application's module is not owned;
    * an owned module's source cannot be read or parsed, or a relative
      import in it goes beyond the top-level package;
    * an owned module that stays calls ``__import__``, ``import_module`` and
      their kin, ``exec`` or ``eval``: what it imports is unknown. In a
      forgotten module this matters only in code that runs on import;
    * a forgotten module may register into the state of a module that stays
      (see below).

    Registration, a heuristic: code of a forgotten module that runs on import
    (the module body and class bodies, decorators, default values; not
    function bodies) calls, decorates with, extends in place, or sets or
    deletes an attribute or item of a name it imported from an owned module,
    e.g. ``registry.ITEMS.append(f)``, ``@register``, ``ITEMS += [f]``,
    ``registry.table[k] = v``, ``setattr(settings, "DEBUG", True)``,
    ``setup()``. The name must not stand for a
    module that stays, nor for an object that a module which stays holds in
    its globals (strings, numbers and the like excepted): that module would
    keep what the old code registered. Deriving a class from an imported
    owned class counts too when class creation runs code: a metaclass or an
    ``__init_subclass__`` from outside the standard library (declarative
    ORM bases); passing class keywords always does. So ``@app.route`` in a
    view module is fine, the application's module being forgotten too,
    while ``create_app()`` imported from a module that stays falls back. It
    misses registration through names bound otherwise (``r =
    registry.get(); r.add(f)``) and by ``__set_name__`` hooks; and it errs
    on the safe side for calls that only read.
    """
    if app_module not in generation:
        return None
    seeds = _changed_modules(generation, changed)
    if seeds is None:
        return None
    scans = _scan_all(generation)
    if scans is None:
        return None
    importers = _importers(generation, scans)
    seeds |= {app_module, *(name for name in roots if name in generation)}
    names = _close(seeds, importers)
    if _unsure(names, generation, scans):
        return None
    return names


def cache_info() -> functools._CacheInfo:
    """Hits and misses of the cache of parsed sources."""
    return _scan_file.cache_info()


# -- changed files -----------------------------------------------------------


def _changed_modules(generation: Owners, changed: Iterable[str]) -> set[str] | None:
    """The owned modules whose source files are ``changed``; ``None`` if any is not one."""
    by_file = _by_file(generation, str)
    by_real: dict[str, list[str]] | None = None
    names: set[str] = set()
    for path in changed:
        found = by_file.get(path)
        if found is None:
            if by_real is None:
                by_real = _by_file(generation, _real)
            found = by_real.get(_real(path))
        if found is None:
            return None
        names.update(found)
    return names


def _by_file(generation: Owners, key: Callable[[str], str]) -> dict[str, list[str]]:
    files: dict[str, list[str]] = defaultdict(list)
    for name, module in generation.items():
        filename = module_file(module)
        if filename is not None:
            files[key(filename)].append(name)
    return files


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


# -- reading sources -----------------------------------------------------------


@dataclass(frozen=True)
class _Scan:
    """What one module's source says about its imports."""

    #: Each entry: candidates, the first owned one is imported.
    requires: tuple[tuple[str, ...], ...] = ()
    #: Dynamic imports, ``exec`` or ``eval`` anywhere / in code run on import.
    dynamic: bool = False
    dynamic_on_import: bool = False
    #: Names bound by import statements run on import, with where they come from.
    bindings: Mapping[str, tuple[Source, ...]] = field(default_factory=dict)
    #: Modules star-imported on import.
    stars: tuple[str, ...] = ()
    #: Called, decorated with, or assigned into on import.
    touched: tuple[Chain, ...] = ()
    #: Base classes of classes created on import.
    subclassed: tuple[Chain, ...] = ()


_NO_CODE = _Scan()


def _scan_all(generation: Owners) -> dict[str, _Scan] | None:
    scans = {}
    for name, module in generation.items():
        scan = _scan_module(module)
        if scan is None:
            return None
        scans[name] = scan
    return scans


def _scan_module(module: ModuleType) -> _Scan | None:
    filename = module_file(module)
    if filename is None:
        return _NO_CODE if _is_namespace(module) else None
    stamp = Stamp.of(filename)
    if stamp is None or not filename.endswith(tuple(importlib.machinery.SOURCE_SUFFIXES)):
        return None
    package = getattr(module, "__package__", None)
    if package is None:
        package = getattr(getattr(module, "__spec__", None), "parent", None)
    return _scan_file(filename, package or "", stamp)


def _is_namespace(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return (
        spec is not None
        and spec.origin in (None, "namespace")
        and spec.submodule_search_locations is not None
    )


@functools.lru_cache(maxsize=CACHE_SIZE)
def _scan_file(filename: str, package: str, stamp: Stamp) -> _Scan | None:
    """Read one version of a source file (``stamp`` is its cache key only)."""
    scanner = _Scanner(package)
    try:
        with open(filename, "rb") as file:
            source = file.read()
        with warnings.catch_warnings():
            # Invalid escape sequences and the like are the compiler's to report.
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename)
        scanner.visit(tree)
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return scanner.result()


class _Scanner(ast.NodeVisitor):
    """Collect the facts of a :class:`_Scan` in one walk of a module's tree."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.on_import = True
        self.unresolved = False
        self.requires: list[tuple[str, ...]] = []
        self.dynamic = self.dynamic_on_import = False
        self.bindings: dict[str, list[Source]] = defaultdict(list)
        self.stars: list[str] = []
        self.touched: set[Chain] = set()
        self.subclassed: set[Chain] = set()

    def result(self) -> _Scan | None:
        if self.unresolved:
            return None
        bound = set(self.bindings)

        def imported(chains: set[Chain]) -> tuple[Chain, ...]:
            return tuple(sorted(c for c in chains if self.stars or c[0] in bound))

        return _Scan(
            tuple(dict.fromkeys(self.requires)),
            self.dynamic,
            self.dynamic_on_import,
            {name: tuple(dict.fromkeys(sources)) for name, sources in self.bindings.items()},
            tuple(dict.fromkeys(self.stars)),
            imported(self.touched),
            imported(self.subclassed),
        )

    # -- imports

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._require_all(alias.name)
            if alias.asname:
                self._bind(alias.asname, (alias.name, None))
            else:
                top = alias.name.partition(".")[0]
                self._bind(top, (top, None))

    def _require_all(self, name: str) -> None:
        """``import a.b.c`` imports ``a``, ``a.b`` and ``a.b.c``."""
        parts = name.split(".")
        self.requires.extend((".".join(parts[:n]),) for n in range(1, len(parts) + 1))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node.level, node.module)
        if base is None:
            self.unresolved = True
            return
        for alias in node.names:
            if alias.name == "*":
                self.requires.append((base,))
                if self.on_import:
                    self.stars.append(base)
            else:
                self.requires.append((f"{base}.{alias.name}", base))
                self._bind(alias.asname or alias.name, (base, alias.name))

    def _absolute(self, level: int, module: str | None) -> str | None:
        if level == 0:
            return module
        bits = self.package.rsplit(".", level - 1) if self.package else []
        if len(bits) < level:
            return None
        return f"{bits[0]}.{module}" if module else bits[0]

    def _bind(self, name: str, source: Source) -> None:
        # Imports inside functions bind local names, which code run on import never sees.
        if self.on_import:
            self.bindings[name].append(source)

    # -- what runs on import

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._touch_all(node.decorator_list)
        for expr in node.decorator_list:
            self.visit(expr)
        self.visit(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        self._in_function(node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)
        self._in_function([node.body])

    def _in_function(self, body: list[ast.stmt] | list[ast.expr]) -> None:
        on_import, self.on_import = self.on_import, False
        try:
            for child in body:
                self.visit(child)
        finally:
            self.on_import = on_import

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        # A class body runs on import, like the module body.
        self._touch_all(node.decorator_list)
        self._touch_all(keyword.value for keyword in node.keywords)
        if self.on_import:
            self.subclassed.update(filter(None, map(_chain, node.bases)))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        included = _included(node)
        if included is not None:
            self._require_all(included)
        if _is_dynamic(node.func):
            self.dynamic = True
            self.dynamic_on_import = self.dynamic_on_import or self.on_import
        self._touch_all([node.func])
        if isinstance(node.func, ast.Name) and node.func.id in _SETTERS and node.args:
            self._touch_all(node.args[:1])
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # ``a.b.c = v``, ``a.b[k] = v``, ``del a.b[k]``: what changes is ``a.b``.
        if not isinstance(node.ctx, ast.Load):
            self._touch_all([node.value])
        self.generic_visit(node)

    visit_Subscript = visit_Attribute  # type: ignore[assignment]

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        # ``ITEMS += [f]`` extends an imported list in place.
        if isinstance(node.target, ast.Name):
            self._touch_all([node.target])
        self.generic_visit(node)

    def _touch_all(self, exprs: Iterable[ast.expr]) -> None:
        if self.on_import:
            self.touched.update(filter(None, map(_chain, exprs)))


def _chain(node: ast.expr) -> Chain | None:
    """The name an expression starts from, and the attributes that follow it."""
    links = []
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        links.append(node)
        node = node.func if isinstance(node, ast.Call) else node.value
    if not isinstance(node, ast.Name):
        return None
    attrs = []
    for link in reversed(links):
        if not isinstance(link, ast.Attribute):
            break
        attrs.append(link.attr)
    return node.id, tuple(attrs)


def _included(node: ast.Call) -> str | None:
    """The module a Django URLconf names in ``include("app.urls")`` or
    ``include(("app.urls", "app"))``."""
    func = node.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if name != "include" or not node.args:
        return None
    target = node.args[0]
    if isinstance(target, ast.Tuple) and target.elts:
        target = target.elts[0]
    if isinstance(target, ast.Constant) and isinstance(target.value, str):
        return target.value
    return None


def _is_dynamic(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in _DYNAMIC_IMPORTS or func.id in _DYNAMIC_CODE
    if isinstance(func, ast.Attribute):
        if func.attr in _DYNAMIC_IMPORTS:
            return True
        owner = func.value
        return func.attr in _DYNAMIC_CODE and isinstance(owner, ast.Name) and owner.id == "builtins"
    return False


# -- the graph -------------------------------------------------------------------


def _importers(generation: Owners, scans: Mapping[str, _Scan]) -> dict[str, list[str]]:
    """For each owned module, the owned modules that import it."""
    importers: dict[str, list[str]] = defaultdict(list)
    for name, module in generation.items():
        for dependency in _dependencies(name, module, scans[name], generation):
            importers[dependency].append(name)
    return importers


def _dependencies(name: str, module: ModuleType, scan: _Scan, generation: Owners) -> set[str]:
    found = _referenced(module, generation)
    for candidates in scan.requires:
        for candidate in candidates:
            if candidate in generation:
                found.add(candidate)
                break
    found.discard(name)
    return found


def _referenced(module: ModuleType, generation: Owners) -> set[str]:
    """Owned modules whose module objects, functions or classes ``module`` holds."""
    found = set()
    own = vars(module)
    prefix = f"{module.__name__}."
    # type() rather than isinstance(): proxies answer isinstance() with their target's class.
    for key, value in list(own.items()):
        kind = type(value)
        if kind is FunctionType:
            if value.__globals__ is own:
                continue
            owner = value.__module__
        elif issubclass(kind, type):
            owner = getattr(value, "__module__", None)
        elif issubclass(kind, ModuleType):
            owner = value.__name__
            if owner == prefix + key:
                continue  # a submodule bound on its package: importing it again rebinds it
        else:
            continue
        if isinstance(owner, str) and owner in generation:
            found.add(owner)
    return found


def _close(seeds: set[str], importers: Mapping[str, list[str]]) -> set[str]:
    """``seeds`` with their importers, transitively."""
    names: set[str] = set()
    todo = list(seeds)
    while todo:
        name = todo.pop()
        if name not in names:
            names.add(name)
            todo.extend(importers.get(name, ()))
    return names


# -- what makes it unsure ----------------------------------------------------------


def _unsure(names: set[str], generation: Owners, scans: Mapping[str, _Scan]) -> bool:
    if any(scan.dynamic for name, scan in scans.items() if name not in names):
        return True
    holders = _Holders(generation)
    return any(
        scans[name].dynamic_on_import
        or _registers(generation[name], scans[name], names, generation, holders)
        for name in names
    )


def _registers(
    module: ModuleType, scan: _Scan, names: set[str], generation: Owners, holders: _Holders
) -> bool:
    """Whether code of ``module`` run on import may register into a module that stays."""
    for chain in scan.touched:
        targets = _targets(module, chain, scan, generation)
        if targets is None or not all(holders.forgotten(t, names) for t in targets):
            return True
    for chain in scan.subclassed:
        targets = _targets(module, chain, scan, generation)
        if targets is None:
            return True
        for target in targets:
            runs_code = not issubclass(type(target), type) or _runs_hooks(target)
            if runs_code and not holders.forgotten(target, names):
                return True
    return False


def _targets(
    module: ModuleType, chain: Chain, scan: _Scan, generation: Owners
) -> list[object] | None:
    """The objects of owned modules that ``chain`` may stand for; ``None``: unknown."""
    root, attrs = chain
    explicit = scan.bindings.get(root, ())
    sources = explicit or tuple((star, root) for star in scan.stars)
    values = []
    for base, name in sources:
        if name is None or f"{base}.{name}" in generation:
            value = generation.get(base if name is None else f"{base}.{name}", _MISSING)
        elif base in generation:
            value = vars(generation[base]).get(name, _MISSING)
            if value is _MISSING and explicit:
                return None
        else:
            continue
        if value is not _MISSING:
            values.append(value)
    if values:
        # What the name holds now, should the module have rebound it.
        bound = vars(module).get(root, _MISSING)
        if bound is not _MISSING and all(bound is not value for value in values):
            values.append(bound)
    return [_descend(value, attrs) for value in values]


def _descend(value: object, attrs: tuple[str, ...]) -> object:
    """Follow ``attrs`` through modules: ``pkg.registry.ITEMS.append`` stands for ``ITEMS``."""
    for attr in attrs:
        if not issubclass(type(value), ModuleType):
            break
        child = vars(value).get(attr, _MISSING)
        if child is _MISSING:
            break
        value = child
    return value


def _runs_hooks(cls: type) -> bool:
    """Whether deriving from ``cls`` runs code outside the standard library."""
    if not _in_stdlib(type(cls)):
        return True
    return any(
        "__init_subclass__" in vars(klass) and not _in_stdlib(klass) for klass in cls.__mro__
    )


def _in_stdlib(cls: type) -> bool:
    return str(getattr(cls, "__module__", "")).partition(".")[0] in stdlib_module_names()


class _Holders:
    """Which owned modules hold an object in their globals; indexed on first use."""

    def __init__(self, generation: Owners) -> None:
        self._generation = generation
        self._index: dict[int, set[str]] | None = None

    def forgotten(self, value: object, names: set[str]) -> bool:
        """Whether what ``value`` holds is forgotten with ``names``, or is no module's state."""
        if issubclass(type(value), _IMMUTABLE):
            return True
        if issubclass(type(value), ModuleType):
            name = value.__name__
            return name not in self._generation or name in names
        return self._holding(value) <= names

    def _holding(self, value: object) -> set[str]:
        if self._index is None:
            index: dict[int, set[str]] = defaultdict(set)
            for name, module in self._generation.items():
                for held in list(vars(module).values()):
                    index[id(held)].add(name)
            self._index = index
        return self._index.get(id(value), set())
