"""``scope="functions"``: swap edited function bodies in place.

:func:`decide` is pure: from the source a module was imported from and its
new source it tells which functions to give new code (those whose body
changed, and those whose lines merely moved, so that tracebacks point at
the right lines), or ``None`` when the edit is more than that. A
:class:`Patcher` holds what deciding needs from the running process (the
source each module was imported from, the functions that ran while the
application loaded) and applies a decision to the live function objects.

The source a module was imported from is read when a load has succeeded,
before any later edit is looked at. A copy is trusted only when the file's
modification time lies before the load started (an edit made while the
modules imported could otherwise be taken for what they imported), or when
it is the very text this process read before re-importing or patching it.

Functions whose code ran while the application loaded (imports, the
resolver statement, the framework's own imports) are recorded with
:mod:`sys.monitoring` (Python 3.12+, each code object reports once) or
:func:`sys.setprofile`; their results are in use (an application object, a
decorator's wrappers, routes), so an edit of their body is never patched.
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import inspect
import linecache
import logging
import marshal
import os
import sys
import warnings
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import CodeType, FunctionType, MethodType, ModuleType
from typing import Any, Union

from .modules import is_library_file, module_file, read_bytecode
from .tracking import CLOCK_SLACK_NS, Stamp

__all__ = ["Patch", "Patcher", "Plan", "Swap", "decide"]

log = logging.getLogger("memento")

_FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef)
# Where a def may sit outside a function body: statements, except and case clauses.
_BLOCKS = tuple(
    getattr(ast, name) for name in ("stmt", "excepthandler", "match_case") if hasattr(ast, name)
)
FunctionNode = Union[ast.FunctionDef, ast.AsyncFunctionDef]
# Code objects that never outlive the call that made them.
_TRANSIENT = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})
_CO_NEWLOCALS = inspect.CO_NEWLOCALS
# A file system keeping whole seconds may date an edit up to 2 s early.
_COARSE_SLACK_NS = 2_000_000_000


@dataclass(frozen=True)
class Swap:
    """One function to give new code.

    ``old`` and ``new``: its code compiled from the old and the new source;
    ``changed``: its body differs (``False``: only its lines moved);
    ``nested``: its code defines functions (closures it made may be alive).
    """

    qualname: str
    old: CodeType
    new: CodeType
    changed: bool
    nested: bool


@dataclass(frozen=True)
class Patch:
    """What an edit of one file needs: ``swaps`` (maybe none, for a comment)
    and the new ``source``."""

    filename: str
    source: str
    swaps: tuple[Swap, ...]


def decide(old_source: str, new_source: str, filename: str) -> Patch | None:
    """The functions to swap when an edit lies inside function bodies only, else ``None``.

    "Inside" means: the module with every function body left out (its
    docstring kept) is the same, names, signatures, defaults, annotations,
    decorators and class bodies included, and each changed function keeps
    its free variables. Also ``None`` when either source does not compile.
    """
    old = _Module.parse(old_source, filename)
    new = _Module.parse(new_source, filename)
    if old is None or new is None or old.skeleton != new.skeleton:
        return None
    swaps = []
    for (qualname, old_body, old_code), (_, new_body, new_code) in zip(
        old.functions, new.functions
    ):
        if old_code == new_code:  # code equality covers line numbers
            continue
        if old_code.co_freevars != new_code.co_freevars:
            return None  # a new super() or __class__: no cell to give it
        nested = any(
            isinstance(const, CodeType) and const.co_name not in _TRANSIENT
            for const in old_code.co_consts
        )
        swaps.append(Swap(qualname, old_code, new_code, old_body != new_body, nested))
    return Patch(filename, new_source, tuple(swaps))


@dataclass
class _Module:
    skeleton: str
    #: qualified name, ``ast.dump`` of the whole definition, code
    functions: list[tuple[str, str, CodeType]]

    @classmethod
    def parse(cls, source: str, filename: str) -> _Module | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the import showed them already
                tree = ast.parse(source, filename)
                code = compile(tree, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            return None
        codes = _function_codes(code)
        functions = []
        nodes = _function_nodes(tree)
        for qualname, node in nodes:
            first = min([node.lineno, *(deco.lineno for deco in node.decorator_list)])
            found = codes.get((qualname, first))
            if found is None:  # e.g. generic functions (PEP 695): their own scope
                return None
            functions.append((qualname, ast.dump(node), found))
        for _, node in nodes:  # their dumps are taken: blank the bodies
            node.body = node.body[:1] if ast.get_docstring(node, clean=False) else []
        return cls(ast.dump(tree), functions)


def _function_nodes(tree: ast.AST) -> list[tuple[str, FunctionNode]]:
    """Functions and methods in source order, not those inside function bodies."""
    found: list[tuple[str, FunctionNode]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _FUNCTION_NODES):
                found.append((prefix + child.name, child))
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, _BLOCKS):
                visit(child, prefix)

    visit(tree, "")
    return found


def _function_codes(code: CodeType, prefix: str = "") -> dict[tuple[str, int], CodeType]:
    """``(qualname, first line)`` → code, for functions and methods of a module's code."""
    found = {}
    for const in code.co_consts:
        if not isinstance(const, CodeType) or const.co_name.startswith("<"):
            continue
        if const.co_flags & _CO_NEWLOCALS:
            found[(prefix + const.co_name, const.co_firstlineno)] = const
        else:  # a class body
            found.update(_function_codes(const, f"{prefix}{const.co_name}."))
    return found


# -- the running process ------------------------------------------------------

#: A function object and the caches (``functools.lru_cache``) in front of it.
Hit = tuple[FunctionType, tuple[Any, ...]]


@dataclass
class Plan:
    """A decision checked against the live objects, ready to apply."""

    assignments: list[tuple[FunctionType, CodeType]] = field(default_factory=list)
    caches: list[Any] = field(default_factory=list)
    ran: list[CodeType] = field(default_factory=list)
    sources: dict[str, tuple[ModuleType, str, os.stat_result]] = field(default_factory=dict)
    changed: int = 0

    def describe(self) -> str:
        return f"{self.changed} changed, {len(self.assignments) - self.changed} moved"


class Patcher:
    """What ``scope="functions"`` keeps between reloads, and applying a plan.

    ``enabled`` false: a no-op (other scopes pay nothing).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        # path → (module, the source it was imported from or last patched to)
        self._sources: dict[str, tuple[weakref.ref[ModuleType], str]] = {}
        # Sources read from disk after a load: is the bytecode imported theirs?
        self._unverified: dict[str, Stamp] = {}
        self._ran: weakref.WeakSet[CodeType] = weakref.WeakSet()
        self._imported: set[str] | None = None
        self._read: dict[str, tuple[Stamp, str]] = {}
        self._recorded = True

    # -- loads ---------------------------------------------------------------

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record the functions that run and the modules imported in the body (a load)."""
        if not self.enabled:
            yield
            return
        before = set(sys.modules)
        self._imported = None
        seen = None
        try:
            with recorded_calls() as seen:
                yield
        finally:
            self._imported = set(sys.modules) - before
            self._recorded = seen is not None
            if seen is not None:
                self._ran.update(_user_code(seen))
                seen.clear()

    def loaded(self, generation: Mapping[str, ModuleType], since_ns: int) -> None:
        """After a successful load begun at ``since_ns``: keep the source of each
        module it imported."""
        imported, self._imported = self._imported, None
        if not self.enabled or imported is None:
            return
        if not self._recorded:
            # What ran is not known: nothing is patched until modules are imported again.
            log.debug("scope functions: calls could not be recorded (another profiler?)")
            self._sources.clear()
            return
        for name in imported & generation.keys():
            module = generation[name]
            path = module_file(module)
            if path is None or not path.endswith(".py"):
                continue
            trusted = self._trusted_source(path, since_ns)
            if trusted is None:
                self._sources.pop(path, None)
            else:
                self._sources[path] = (weakref.ref(module), trusted[1])
                self._unverified[path] = trusted[0]
        self._read = {}

    def _trusted_source(self, path: str, since_ns: int) -> tuple[Stamp, str] | None:
        read = _read(path)
        if read is None:
            return None
        stamp, source, _ = read
        earlier = self._read.get(path)
        if earlier is not None and earlier[0] == stamp:
            return earlier  # read before the import, unchanged since
        slack = _COARSE_SLACK_NS if stamp.mtime_ns % 1_000_000_000 == 0 else CLOCK_SLACK_NS
        return (stamp, source) if stamp.mtime_ns + slack < since_ns else None

    # -- patching --------------------------------------------------------------

    def plan(self, changed: Collection[str], generation: Mapping[str, ModuleType]) -> Plan | None:
        """How to serve ``changed`` by swapping code, or ``None`` to re-import."""
        if not self.enabled or not changed:
            return None
        by_file: dict[str, list[ModuleType]] = {}
        wanted = set(changed)
        for module in generation.values():
            path = module_file(module)
            if path in wanted:
                by_file.setdefault(path, []).append(module)
        plan = Plan()
        self._read = {}
        for path in sorted(wanted):
            read = _read(path)
            if read is not None:
                self._read[path] = read[:2]
            reason = self._plan_file(plan, path, read, by_file.get(path, []))
            if reason:
                log.debug("scope functions: %s: %s, re-importing", path, reason)
                return None
        return plan

    def _plan_file(
        self,
        plan: Plan,
        path: str,
        read: tuple[Stamp, str, os.stat_result] | None,
        modules: list[ModuleType],
    ) -> str:
        """Add one file's swaps to ``plan``; a reason it cannot be patched, or ``""``."""
        if not modules:
            return "not the source of a served module"
        if read is None:
            return "cannot be read"
        for module in modules:
            kept = self._sources.get(path)
            if kept is None or kept[0]() is not module:
                return "the source it was imported from is not known"
            stamp = self._unverified.get(path)
            if stamp is not None and not _bytecode_matches(path, kept[1], stamp):
                return "its bytecode was not compiled from its source"
            patch = decide(kept[1], read[1], path)
            if patch is None:
                return "the edit is not inside function bodies"
            reason = self._plan_module(plan, patch, module)
            if reason:
                return reason
            plan.sources[path] = (module, read[1], read[2])
        return ""

    def _plan_module(self, plan: Plan, patch: Patch, module: ModuleType) -> str:
        if not patch.swaps:
            return ""
        hits = _hits(patch, module)
        for swap in patch.swaps:
            found = hits.get(swap.old, [])
            if not found:
                if swap.changed:
                    return f"{swap.qualname} is not reachable from the module"
                continue  # only moved: nothing calls it by this name
            functions = _with_copies([function for function, _ in found])
            ran = any(function.__code__ in self._ran for function in functions)
            if ran and (swap.changed or swap.nested):
                return f"{swap.qualname} ran while the application loaded"
            plan.assignments += [(function, swap.new) for function in functions]
            plan.caches += [cache for _, caches in found for cache in caches]
            plan.changed += swap.changed * len(functions)
            if ran:
                plan.ran.append(swap.new)
        return ""

    def apply(self, plan: Plan) -> None:
        """Swap the code; clear the caches in front of it; remember the new sources."""
        for function, code in plan.assignments:
            function.__code__ = code
        for cache in plan.caches:
            cache.cache_clear()
        self._ran.update(plan.ran)
        for path, (module, source, stat) in plan.sources.items():
            self._sources[path] = (weakref.ref(module), source)
            self._unverified.pop(path, None)
            # Tracebacks read the lines the new code was compiled from.
            linecache.cache[path] = (stat.st_size, stat.st_mtime, source.splitlines(True), path)
        self._read = {}


def _read(path: str) -> tuple[Stamp, str, os.stat_result] | None:
    """A source file decoded as the import system does, and its stamp; ``None``
    when it is missing or changed while being read."""
    try:
        before = os.stat(path)
        with open(path, "rb") as file:
            data = file.read()
        after = os.stat(path)
        source = importlib.util.decode_source(data)
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    stamp = Stamp(before.st_mtime_ns, before.st_size, before.st_ino)
    if stamp != Stamp(after.st_mtime_ns, after.st_size, after.st_ino):
        return None
    return stamp, source, before


def _bytecode_matches(path: str, source: str, stamp: Stamp) -> bool:
    """Whether cached bytecode the import system would take for ``source`` was
    compiled from it (an edit of the same size in the same second was not)."""
    found = read_bytecode(path)
    if found is None:
        return True  # no bytecode: the import compiled the source
    flags, mtime, length, data = found
    if not flags & 1:  # stamped with the source's mtime and size
        seconds = stamp.mtime_ns // 1_000_000_000
        if (mtime, length) != (seconds & 0xFFFFFFFF, stamp.size & 0xFFFFFFFF):
            return True  # not valid for this source: the import compiled it
    try:
        cached_code = marshal.loads(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(cached_code == compile(source, path, "exec", dont_inherit=True))
    except (ValueError, EOFError, TypeError, SyntaxError):
        return False


def _hits(patch: Patch, module: ModuleType) -> dict[CodeType, list[Hit]]:
    """The live functions of ``module`` running one of the swaps' old code."""
    wanted = {swap.old: swap.old for swap in patch.swaps}
    hits: dict[CodeType, list[Hit]] = {}
    for function, caches in _reachable(module):
        code = function.__code__
        old = wanted.get(code)
        if old is not None and code.co_filename == patch.filename:
            hits.setdefault(old, []).append((function, caches))
    return hits


def _reachable(module: ModuleType) -> Iterator[Hit]:
    """Functions reachable from a module's namespace: through classes defined in
    it, methods, static and class methods, properties and ``__wrapped__`` chains."""
    seen: set[int] = set()
    stack: list[tuple[object, tuple[Any, ...]]] = [
        (value, ()) for value in list(vars(module).values())
    ]
    name = module.__name__
    while stack:
        obj, caches = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, FunctionType):
            yield obj, caches
        elif isinstance(obj, (staticmethod, classmethod, MethodType)):
            stack.append((obj.__func__, caches))
            continue
        elif isinstance(obj, property):
            stack += [(part, caches) for part in (obj.fget, obj.fset, obj.fdel) if part]
            continue
        elif isinstance(obj, type):
            if vars(obj).get("__module__") == name:
                stack += [(value, ()) for value in list(vars(obj).values())]
            continue
        wrapped = _static(obj, "__wrapped__")
        if wrapped is not None:
            if callable(_static(obj, "cache_clear")):
                caches = (*caches, obj)
            stack.append((wrapped, caches))


def _static(obj: object, name: str) -> Any:
    """An attribute found without running code (proxies, ``__getattr__``)."""
    try:
        return inspect.getattr_static(obj, name, None)
    except Exception:  # a broken __dict__ or __mro__ of some object
        return None


def _with_copies(functions: list[FunctionType]) -> list[FunctionType]:
    """The functions sharing the code of ``functions``: copies made by decorators
    (``FunctionType(f.__code__, ...)``) too. Frames running it keep the old code."""
    unique = list({id(function): function for function in functions}.values())
    code = unique[0].__code__
    # Held by: the argument, ``code``, each known function.
    if sys.getrefcount(code) <= 2 + len(unique):
        return unique
    known = {id(function) for function in unique}
    copies = [
        holder
        for holder in gc.get_referrers(code)
        if isinstance(holder, FunctionType) and holder.__code__ is code and id(holder) not in known
    ]
    return unique + copies


def _user_code(codes: Iterable[CodeType]) -> list[CodeType]:
    """The code objects of user files (not the standard library, not installed)."""
    return [
        code
        for code in codes
        if os.path.isabs(code.co_filename) and not is_library_file(code.co_filename)
    ]


@contextmanager
def recorded_calls() -> Iterator[set[CodeType] | None]:
    """The code objects that start running in the body (any thread on 3.12+,
    this thread before); ``None`` when another profiler holds the hooks."""
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None:
        with _monitored(monitoring) as seen:
            yield seen
        return
    if sys.getprofile() is not None:
        yield None
        return
    seen: set[CodeType] = set()

    def profile(frame: Any, event: str, arg: object) -> None:
        if event == "call":
            seen.add(frame.f_code)

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)


@contextmanager
def _monitored(monitoring: Any) -> Iterator[set[CodeType] | None]:
    tool = next((tool for tool in (2, 3, 4) if monitoring.get_tool(tool) is None), None)
    if tool is None:
        yield None
        return
    seen: set[CodeType] = set()
    start = monitoring.events.PY_START

    def started(code: CodeType, offset: int) -> object:
        seen.add(code)
        return monitoring.DISABLE  # each code object reports once

    monitoring.use_tool_id(tool, "memento")
    try:
        monitoring.register_callback(tool, start, started)
        monitoring.set_events(tool, start)
        yield seen
    finally:
        monitoring.set_events(tool, 0)
        monitoring.register_callback(tool, start, None)
        monitoring.free_tool_id(tool)
