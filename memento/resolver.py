"""Resolver statements: name the WSGI application to load.

``"pkg.mod:app"`` names attribute ``app`` of module ``pkg.mod``;
``"pkg.mod:obj.attr"`` walks an attribute chain; ``"pkg.mod:create_app()"``
and ``"pkg.mod:create_app('dev', debug=True)"`` call a factory with literal
arguments (read with :func:`ast.literal_eval`, never evaluated as code);
``"pkg.mod.app"`` is the dotted form read by :func:`pkgutil.resolve_name`.

:func:`parse` checks a statement without importing anything;
:meth:`Resolver.resolve` imports, walks and calls.
"""

from __future__ import annotations

import ast
import copy
import importlib
import importlib.util
import io
import keyword
import pkgutil
import sys
import tokenize
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["Resolver", "parse", "resolve"]

_OPENING = frozenset("([{")
_CLOSING = frozenset(")]}")


class Resolver:
    """A parsed resolver statement; :func:`parse` builds it.

    ``module`` is the module named before the colon. For the dotted form
    (``attrs == ()``) it is the first dotted segment until :meth:`resolve`
    sets it to the module the object was found in. ``args`` and ``kwargs``
    are ``None`` when the statement calls no factory.
    """

    def __init__(
        self,
        statement: str,
        module: str,
        attrs: tuple[str, ...] = (),
        args: tuple[object, ...] | None = None,
        kwargs: dict[str, object] | None = None,
    ) -> None:
        self.statement = statement
        self.module = module
        self.attrs = attrs
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"Resolver({self.statement!r})"

    def resolve(self) -> Callable[..., Any]:
        """Import the module, walk the attributes, call the factory.

        Raises ``ValueError`` (with the cause chained) when the statement's
        module or one of its parent packages does not exist, an attribute is
        missing, the factory or the result is not callable. Anything the
        user's code raises while it is imported or while the factory runs
        (a ``SyntaxError``, a ``ModuleNotFoundError`` for another module)
        propagates unchanged.
        """
        if not self.attrs:
            obj = self._resolve_dotted()
            target = self.statement.strip()
        else:
            obj = self._walk(self._import())
            target = f"{self.module}:{'.'.join(self.attrs)}"
        if self.args is not None:
            obj = self._call(obj, target)
            what = f"the result of {target + '()'!r}"
        else:
            what = repr(target)
        if not callable(obj):
            raise ValueError(
                f"resolver {self.statement!r}: {what} is not callable, got an "
                f"object of type {type(obj).__name__!r}; a WSGI application "
                "must be callable"
            )
        return obj

    def _import(self) -> Any:
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name not in _prefixes(self.module):
                raise
            raise ValueError(
                f"resolver {self.statement!r}: no module named {exc.name!r}"
            ) from exc

    def _walk(self, obj: Any) -> Any:
        for index, attr in enumerate(self.attrs):
            try:
                obj = getattr(obj, attr)
            except AttributeError as exc:
                if index == 0:
                    owner = f"module {self.module!r}"
                else:
                    owner = repr(f"{self.module}:{'.'.join(self.attrs[:index])}")
                raise ValueError(
                    f"resolver {self.statement!r}: {owner} has no attribute {attr!r}"
                ) from exc
        return obj

    def _call(self, factory: Any, target: str) -> Any:
        if not callable(factory):
            raise ValueError(
                f"resolver {self.statement!r}: factory {target!r} is not "
                f"callable, got an object of type {type(factory).__name__!r}"
            )
        # Fresh copies: a factory that mutates its arguments must not change
        # what the next reload passes.
        args = copy.deepcopy(self.args or ())
        kwargs = copy.deepcopy(self.kwargs or {})
        return factory(*args, **kwargs)

    def _resolve_dotted(self) -> Any:
        name = self.statement.strip()
        try:
            obj = pkgutil.resolve_name(name)
        except ModuleNotFoundError as exc:
            if exc.name not in _prefixes(name):
                raise
            raise ValueError(
                f"resolver {self.statement!r}: no module named {exc.name!r}"
            ) from exc
        except AttributeError as exc:
            found = _loaded_prefix(name)
            if found is None:
                raise
            self.module = found
            self._raise_import_error(name, found)
            self._raise_missing_attribute(name, found, exc)
            raise
        self.module = _loaded_prefix(name) or self.module
        return obj

    def _raise_import_error(self, name: str, found: str) -> None:
        # pkgutil.resolve_name stops quietly at a submodule whose import
        # raised ImportError and then reports a missing attribute; importing
        # that submodule again lets its own error through.
        following = name[len(found) + 1 :].split(".")[0]
        if following and _is_submodule(found, following):
            importlib.import_module(f"{found}.{following}")

    def _raise_missing_attribute(
        self, name: str, found: str, exc: BaseException
    ) -> None:
        obj: Any = sys.modules[found]
        owner = f"module {found!r}"
        for attr in name[len(found) + 1 :].split("."):
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                raise ValueError(
                    f"resolver {self.statement!r}: {owner} has no attribute {attr!r}"
                ) from exc
            found = f"{found}.{attr}"
            owner = repr(found)


def parse(statement: str) -> Resolver:
    """Check a resolver statement's syntax and return its :class:`Resolver`.

    Imports nothing. Raises ``ValueError`` naming the statement and the part
    that is malformed.
    """
    if not isinstance(statement, str):
        raise ValueError(
            f"resolver {statement!r}: expected a string, got "
            f"{type(statement).__name__!r}"
        )
    text = statement.strip()
    if not text:
        raise ValueError(f"resolver {statement!r}: empty statement")
    if ":" not in text:
        _check_dotted(statement, text)
        return Resolver(statement, text.split(".")[0])
    module, _, target = (part.strip() for part in text.partition(":"))
    if not module:
        raise ValueError(f"resolver {statement!r}: empty module part")
    _check_dotted(statement, module)
    if not target:
        raise ValueError(f"resolver {statement!r}: empty attribute part")
    attrs, args, kwargs = _parse_target(statement, target)
    return Resolver(statement, module, attrs, args, kwargs)


def resolve(statement: str) -> Callable[..., Any]:
    """Import and return the WSGI application a resolver statement names.

    ``parse(statement).resolve()``: see :func:`parse` and
    :meth:`Resolver.resolve` for what is raised.
    """
    return parse(statement).resolve()


def _check_dotted(statement: str, name: str) -> None:
    for part in name.split("."):
        if not part.isidentifier():
            hint = ""
            if "(" in name and ":" not in statement:
                hint = "; a call needs the colon form 'module:factory()'"
            raise ValueError(
                f"resolver {statement!r}: invalid identifier {part!r} in {name!r}{hint}"
            )


class _Scan(NamedTuple):
    colon: bool  # a colon outside any bracket or string
    unclosed: bool  # the text ends inside a bracket
    call_end: int | None  # offset just past the bracket closing the first "("


def _parse_target(
    statement: str, target: str
) -> tuple[tuple[str, ...], tuple[object, ...] | None, dict[str, object] | None]:
    scan = _scan(target)
    if scan.colon:
        raise ValueError(f"resolver {statement!r}: more than one colon in {target!r}")
    callee, paren, _ = target.partition("(")
    _check_chain(statement, callee)
    if scan.unclosed:
        raise ValueError(f"resolver {statement!r}: unclosed parenthesis")
    if paren and scan.call_end is not None:
        _check_nothing_after_call(statement, target, target[scan.call_end :])
    try:
        tree = ast.parse(target, mode="eval")
    except (SyntaxError, ValueError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise ValueError(
            f"resolver {statement!r}: invalid syntax in {target!r} ({reason})"
        ) from exc
    node = tree.body
    if not isinstance(node, ast.Call):
        return _chain(statement, target, node), None, None
    attrs = _chain(statement, target, node.func)
    args, kwargs = _literal_arguments(statement, target, node)
    return attrs, args, kwargs


def _scan(text: str) -> _Scan:
    depth = 0
    colon = unclosed = False
    call_end = None
    lines = text.splitlines(keepends=True)
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.ERRORTOKEN:
                break  # a bad string or character: ast names it
            if token.type != tokenize.OP:
                continue
            if token.string == ":" and depth == 0:
                colon = True
            elif token.string in _OPENING:
                depth += 1
            elif token.string in _CLOSING:
                depth -= 1
                if depth == 0 and call_end is None:
                    row, col = token.end
                    call_end = sum(map(len, lines[: row - 1])) + col
    except tokenize.TokenError as exc:
        # "EOF in multi-line statement": the text ended inside a bracket
        # (an unterminated string is reported differently on 3.12+).
        unclosed = depth > 0 and "multi-line statement" in str(exc.args[0])
    except SyntaxError:
        pass  # ast.parse reports it
    return _Scan(colon, unclosed, call_end)


def _check_chain(statement: str, chain: str) -> None:
    for part in chain.split("."):
        name = part.strip()
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(
                f"resolver {statement!r}: invalid identifier {part!r} in "
                f"attribute chain {chain.strip()!r}"
            )


def _check_nothing_after_call(statement: str, target: str, tail: str) -> None:
    tail = tail.strip()
    if not tail:
        return
    if tail[0] in ".(":
        raise ValueError(
            f"resolver {statement!r}: the call must be the last part, got {target!r}"
        )
    raise ValueError(f"resolver {statement!r}: unexpected {tail!r} after the call")


def _chain(statement: str, target: str, node: ast.expr) -> tuple[str, ...]:
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if isinstance(node, ast.Call):
        raise ValueError(
            f"resolver {statement!r}: the call must be the last part, got {target!r}"
        )
    if not isinstance(node, ast.Name):
        raise ValueError(
            f"resolver {statement!r}: expected an attribute chain, got {target!r}"
        )
    attrs.append(node.id)
    return tuple(reversed(attrs))


def _literal_arguments(
    statement: str, target: str, call: ast.Call
) -> tuple[tuple[object, ...], dict[str, object]]:
    args = []
    for node in call.args:
        source = _source(target, node)
        if isinstance(node, ast.Starred):
            raise ValueError(
                f"resolver {statement!r}: starred argument {source!r} is not allowed"
            )
        args.append(_literal(statement, source, node))
    kwargs: dict[str, object] = {}
    for item in call.keywords:
        source = _source(target, item)
        if item.arg is None:
            raise ValueError(
                f"resolver {statement!r}: keyword unpacking {source!r} is not allowed"
            )
        if item.arg in kwargs:
            raise ValueError(
                f"resolver {statement!r}: keyword argument {item.arg!r} repeated"
            )
        kwargs[item.arg] = _literal(statement, source, item.value)
    return tuple(args), kwargs


def _literal(statement: str, source: str, node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(
            f"resolver {statement!r}: argument {source!r} is not a literal"
        ) from exc


def _source(target: str, node: ast.AST) -> str:
    return ast.get_source_segment(target, node) or ast.unparse(node)


def _prefixes(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:end]) for end in range(1, len(parts) + 1)}


def _loaded_prefix(name: str) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in sys.modules:
            return candidate
    return None


def _is_submodule(package: str, name: str) -> bool:
    if not hasattr(sys.modules[package], "__path__"):
        return False
    try:
        return importlib.util.find_spec(f"{package}.{name}") is not None
    except (ImportError, ValueError):
        return False
