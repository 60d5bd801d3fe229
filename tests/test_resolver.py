from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest

import memento
from memento.resolver import Resolver, parse, resolve

WSGI = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


class Holder:
    app = staticmethod(app)


holder = Holder()
not_callable = 42


def create_app(*args, **kwargs):
    def configured(environ, start_response):
        return app(environ, start_response)

    configured.args = args
    configured.kwargs = kwargs
    return configured


def create_nothing():
    return None


def create_broken():
    raise RuntimeError("factory exploded")


def create_mutating(items):
    items.append("added")

    def configured(environ, start_response):
        return app(environ, start_response)

    configured.items = items
    return configured
"""


@pytest.fixture
def shop(make_package: Callable[[str, dict[str, str]], Path]) -> Path:
    return make_package("shop", {"__init__.py": "", "wsgi.py": WSGI})


def call(app: Callable[..., object]) -> object:
    return app({}, lambda status, headers: None)


# parse


@pytest.mark.parametrize(
    "statement, module, attrs, args, kwargs",
    [
        ("shop.wsgi:app", "shop.wsgi", ("app",), None, None),
        ("shop:app", "shop", ("app",), None, None),
        ("shop.wsgi:holder.app", "shop.wsgi", ("holder", "app"), None, None),
        ("shop.wsgi:create_app()", "shop.wsgi", ("create_app",), (), {}),
        (
            "shop.wsgi:create_app('dev', debug=True)",
            "shop.wsgi",
            ("create_app",),
            ("dev",),
            {"debug": True},
        ),
        ("shop.wsgi:a.b.factory(1)", "shop.wsgi", ("a", "b", "factory"), (1,), {}),
        ("shop.wsgi.app", "shop", (), None, None),
        ("shop", "shop", (), None, None),
        ("  shop.wsgi : app  ", "shop.wsgi", ("app",), None, None),
        (
            "shop.wsgi:create_app ( 1 , x = 2 )",
            "shop.wsgi",
            ("create_app",),
            (1,),
            {"x": 2},
        ),
    ],
)
def test_parse_reads_every_form(
    statement: str,
    module: str,
    attrs: tuple[str, ...],
    args: tuple[object, ...] | None,
    kwargs: dict[str, object] | None,
) -> None:
    resolver = parse(statement)
    assert isinstance(resolver, Resolver)
    assert resolver.statement == statement
    assert resolver.module == module
    assert resolver.attrs == attrs
    assert resolver.args == args
    assert resolver.kwargs == kwargs


def test_parse_reads_literal_arguments() -> None:
    resolver = parse(
        "shop.wsgi:create_app('dev', 2, -3.5, True, None, [1, 'a'], (1, 2), "
        "{'k': (1, 2)}, b'raw', name=\"x\", debug=False, level=None, "
        "ports=[80, 443], extra={'a': [1]})"
    )
    assert resolver.args == (
        "dev",
        2,
        -3.5,
        True,
        None,
        [1, "a"],
        (1, 2),
        {"k": (1, 2)},
        b"raw",
    )
    assert resolver.kwargs == {
        "name": "x",
        "debug": False,
        "level": None,
        "ports": [80, 443],
        "extra": {"a": [1]},
    }


def test_parse_keeps_colons_inside_string_arguments() -> None:
    resolver = parse(
        "shop.wsgi:create_app('sqlite:///db', url='http://127.0.0.1:8000/')"
    )
    assert resolver.args == ("sqlite:///db",)
    assert resolver.kwargs == {"url": "http://127.0.0.1:8000/"}


def test_parse_imports_nothing(shop: Path) -> None:
    before = set(sys.modules)
    parse("shop.wsgi:create_app('dev')")
    parse("shop.wsgi.app")
    assert set(sys.modules) == before
    assert "shop" not in sys.modules


@pytest.mark.parametrize("statement", [None, 42, b"shop.wsgi:app", ["shop.wsgi:app"]])
def test_parse_refuses_a_non_string(statement: object) -> None:
    with pytest.raises(ValueError, match="expected a string") as excinfo:
        parse(statement)  # type: ignore[arg-type]
    assert repr(statement) in str(excinfo.value)


@pytest.mark.parametrize(
    "statement, part",
    [
        ("", "empty statement"),
        ("   ", "empty statement"),
        ("a:b:c", "more than one colon in 'b:c'"),
        ("a:f('x'):g", "more than one colon"),
        (":app", "empty module part"),
        ("shop.wsgi:", "empty attribute part"),
        ("shop..wsgi:app", "invalid identifier '' in 'shop..wsgi'"),
        (".wsgi:app", "invalid identifier '' in '.wsgi'"),
        ("shop.1wsgi:app", "invalid identifier '1wsgi'"),
        ("shop-app.wsgi:app", "invalid identifier 'shop-app'"),
        ("shop.wsgi:1app", "invalid identifier '1app'"),
        ("shop.wsgi:app-x", "invalid identifier 'app-x'"),
        ("shop.wsgi:app..x", "invalid identifier ''"),
        ("shop.wsgi:class", "invalid identifier 'class'"),
        ("shop.wsgi:app x", "invalid identifier 'app x'"),
        ("shop.wsgi:app # comment", "invalid identifier 'app # comment'"),
        ("shop.wsgi:'app'", "invalid identifier \"'app'\""),
        ("shop.wsgi:()", "invalid identifier ''"),
        ("shop.wsgi:app[0]", "invalid identifier 'app[0]'"),
        ("shop.wsgi:f().x", "the call must be the last part, got 'f().x'"),
        ("shop.wsgi:f()()", "the call must be the last part"),
        ("shop.wsgi:f(*args)", "starred argument '*args' is not allowed"),
        ("shop.wsgi:f(**options)", "keyword unpacking '**options' is not allowed"),
        ("shop.wsgi:f(a=1, a=2)", "keyword argument 'a' repeated"),
        (
            "shop.wsgi:f(os.system('x'))",
            "argument \"os.system('x')\" is not a literal",
        ),
        ("shop.wsgi:f(debug=flag)", "argument 'debug=flag' is not a literal"),
        ("shop.wsgi:f(1 + 2)", "argument '1 + 2' is not a literal"),
        ("shop.wsgi:f([x for x in y])", "is not a literal"),
        ("shop.wsgi:f(lambda: 1)", "argument 'lambda: 1' is not a literal"),
        ("shop.wsgi:app(", "unclosed parenthesis"),
        ("shop.wsgi:app('dev', [1, 2", "unclosed parenthesis"),
        ("shop.wsgi:app({'a': 1}", "unclosed parenthesis"),
        ("shop.wsgi:app() x", "unexpected 'x' after the call"),
        ("shop.wsgi:app())", "unexpected ')' after the call"),
        ("shop.wsgi:app()[0]", "unexpected '[0]' after the call"),
        ("shop.wsgi:app() # comment", "unexpected '# comment' after the call"),
        ("shop.wsgi:app(1 2)", "invalid syntax in 'app(1 2)'"),
        ("shop.wsgi:app(a=1, 2)", "invalid syntax"),
        ("shop.wsgi:app('dev)", "invalid syntax"),
        ("shop.wsgi.create_app()", "a call needs the colon form"),
        ("shop.wsgi app", "invalid identifier 'wsgi app'"),
        ("shop.", "invalid identifier ''"),
    ],
)
def test_parse_names_the_malformed_part(statement: str, part: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse(statement)
    message = str(excinfo.value)
    assert message.startswith(f"resolver {statement!r}: ")
    assert part in message
    assert "\n" not in message


def test_unclosed_parenthesis_message() -> None:
    with pytest.raises(ValueError) as excinfo:
        parse("shop.wsgi:app(")
    assert str(excinfo.value) == "resolver 'shop.wsgi:app(': unclosed parenthesis"


def test_parse_never_evaluates_arguments(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="is not a literal"):
        parse(f"shop.wsgi:f(open({str(marker)!r}, 'w'))")
    assert not marker.exists()


# resolve


def test_resolve_an_attribute(shop: Path) -> None:
    app = resolve("shop.wsgi:app")
    assert call(app) == [b"hello"]
    assert app is sys.modules["shop.wsgi"].app


def test_resolve_is_exported_by_the_package() -> None:
    assert memento.resolve is resolve


def test_resolve_an_attribute_chain(shop: Path) -> None:
    assert resolve("shop.wsgi:holder.app") is sys.modules["shop.wsgi"].app


def test_resolve_calls_a_factory_without_arguments(shop: Path) -> None:
    app = resolve("shop.wsgi:create_app()")
    assert app.args == ()
    assert app.kwargs == {}
    assert call(app) == [b"hello"]


def test_resolve_calls_a_factory_with_literal_arguments(shop: Path) -> None:
    app = resolve(
        "shop.wsgi:create_app('dev', 3, None, [1, 2], {'k': 'v'}, (4,), debug=True, "
        "level=None, hosts=['127.0.0.1'])"
    )
    assert app.args == ("dev", 3, None, [1, 2], {"k": "v"}, (4,))
    assert app.kwargs == {"debug": True, "level": None, "hosts": ["127.0.0.1"]}


def test_each_resolve_passes_fresh_arguments(shop: Path) -> None:
    resolver = parse("shop.wsgi:create_mutating(['given'])")
    assert resolver.resolve().items == ["given", "added"]
    assert resolver.resolve().items == ["given", "added"]
    assert resolver.args == (["given"],)


def test_resolve_the_dotted_form(shop: Path) -> None:
    resolver = parse("shop.wsgi.app")
    assert resolver.module == "shop"
    app = resolver.resolve()
    assert app is sys.modules["shop.wsgi"].app
    assert resolver.module == "shop.wsgi"


def test_resolve_the_dotted_form_with_an_attribute_chain(shop: Path) -> None:
    resolver = parse("shop.wsgi.holder.app")
    assert resolver.resolve() is sys.modules["shop.wsgi"].app
    assert resolver.module == "shop.wsgi"


def test_resolve_the_dotted_form_in_a_subpackage(
    make_package: Callable[[str, dict[str, str]], Path],
) -> None:
    make_package(
        "shop", {"__init__.py": "", "web/__init__.py": "", "web/wsgi.py": WSGI}
    )
    resolver = parse("shop.web.wsgi.app")
    assert call(resolver.resolve()) == [b"hello"]
    assert resolver.module == "shop.web.wsgi"


def test_resolve_imports_again_after_the_module_is_forgotten(shop: Path) -> None:
    resolver = parse("shop.wsgi:app")
    first = resolver.resolve()
    for name in ("shop.wsgi", "shop"):
        del sys.modules[name]
    second = resolver.resolve()
    assert second is not first
    assert call(second) == [b"hello"]


@pytest.mark.parametrize(
    "statement, message",
    [
        ("nowhere.wsgi:app", "resolver 'nowhere.wsgi:app': no module named 'nowhere'"),
        (
            "shop.nowhere:app",
            "resolver 'shop.nowhere:app': no module named 'shop.nowhere'",
        ),
        (
            "shop.wsgi.deeper:app",
            "resolver 'shop.wsgi.deeper:app': no module named 'shop.wsgi.deeper'",
        ),
        ("nowhere.wsgi.app", "resolver 'nowhere.wsgi.app': no module named 'nowhere'"),
    ],
)
def test_resolve_names_a_missing_module(
    shop: Path, statement: str, message: str
) -> None:
    with pytest.raises(ValueError) as excinfo:
        resolve(statement)
    assert str(excinfo.value) == message
    assert isinstance(excinfo.value.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize(
    "statement, message",
    [
        ("shop.wsgi:application", "module 'shop.wsgi' has no attribute 'application'"),
        ("shop.wsgi:holder.nothing", "'shop.wsgi:holder' has no attribute 'nothing'"),
        ("shop.wsgi:holder.app.x.y", "'shop.wsgi:holder.app' has no attribute 'x'"),
        ("shop.wsgi:nothing()", "module 'shop.wsgi' has no attribute 'nothing'"),
        ("shop.wsgi.application", "module 'shop.wsgi' has no attribute 'application'"),
        ("shop.wsgi.holder.nothing", "'shop.wsgi.holder' has no attribute 'nothing'"),
        ("shop.nowhere", "module 'shop' has no attribute 'nowhere'"),
    ],
)
def test_resolve_names_a_missing_attribute(
    shop: Path, statement: str, message: str
) -> None:
    with pytest.raises(ValueError) as excinfo:
        resolve(statement)
    assert str(excinfo.value) == f"resolver {statement!r}: {message}"
    assert isinstance(excinfo.value.__cause__, AttributeError)


def test_resolve_refuses_a_factory_that_is_not_callable(shop: Path) -> None:
    with pytest.raises(ValueError) as excinfo:
        resolve("shop.wsgi:not_callable()")
    assert str(excinfo.value) == (
        "resolver 'shop.wsgi:not_callable()': factory 'shop.wsgi:not_callable' "
        "is not callable, got an object of type 'int'"
    )


@pytest.mark.parametrize(
    "statement, part",
    [
        ("shop.wsgi:not_callable", "'shop.wsgi:not_callable' is not callable"),
        ("shop.wsgi:holder", "'shop.wsgi:holder' is not callable"),
        ("shop.wsgi:create_nothing()", "the result of 'shop.wsgi:create_nothing()'"),
        ("shop.wsgi.not_callable", "'shop.wsgi.not_callable' is not callable"),
        ("shop.wsgi", "'shop.wsgi' is not callable, got an object of type 'module'"),
    ],
)
def test_resolve_refuses_a_result_that_is_not_callable(
    shop: Path, statement: str, part: str
) -> None:
    with pytest.raises(ValueError) as excinfo:
        resolve(statement)
    message = str(excinfo.value)
    assert message.startswith(f"resolver {statement!r}: ")
    assert part in message
    assert "a WSGI application must be callable" in message


def test_an_exception_inside_the_factory_propagates(shop: Path) -> None:
    with pytest.raises(RuntimeError, match="factory exploded"):
        resolve("shop.wsgi:create_broken()")


@pytest.mark.parametrize("statement", ["shop.wsgi:app", "shop.wsgi.app"])
@pytest.mark.parametrize(
    "source, error, text",
    [
        ("raise RuntimeError('import exploded')\n", RuntimeError, "import exploded"),
        ("def app(:\n", SyntaxError, None),
        ("missing_attribute = len.nothing\n", AttributeError, "nothing"),
        ("raise ValueError('bad setting')\n", ValueError, "bad setting"),
        ("from shop import nothing_here\n", ImportError, "nothing_here"),
    ],
)
def test_an_exception_at_import_time_propagates(
    make_package: Callable[[str, dict[str, str]], Path],
    statement: str,
    source: str,
    error: type[BaseException],
    text: str | None,
) -> None:
    make_package("shop", {"__init__.py": "", "wsgi.py": source})
    with pytest.raises(error, match=text) as excinfo:
        resolve(statement)
    assert not str(excinfo.value).startswith("resolver ")
    assert "shop.wsgi" not in sys.modules


@pytest.mark.parametrize("statement", ["shop.wsgi:app", "shop.wsgi.app"])
@pytest.mark.parametrize("where", ["__init__.py", "wsgi.py"])
def test_a_missing_import_inside_the_module_propagates(
    make_package: Callable[[str, dict[str, str]], Path], statement: str, where: str
) -> None:
    files = {"__init__.py": "", "wsgi.py": WSGI}
    files[where] = "import memento_missing_dependency\n" + files[where]
    make_package("shop", files)
    with pytest.raises(ModuleNotFoundError) as excinfo:
        resolve(statement)
    assert excinfo.value.name == "memento_missing_dependency"


def test_a_missing_submodule_import_inside_the_module_propagates(
    make_package: Callable[[str, dict[str, str]], Path],
) -> None:
    make_package("shop", {"__init__.py": "", "wsgi.py": "import shop.helpers\n" + WSGI})
    with pytest.raises(ModuleNotFoundError) as excinfo:
        resolve("shop.wsgi:app")
    assert excinfo.value.name == "shop.helpers"
