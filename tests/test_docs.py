"""The documentation cannot rot: its snippets compile or run, and what it names exists.

* every ``.. code-block:: python`` of ``docs/*.rst`` and README.rst compiles;
* every ``.. testcode::`` block runs in a fresh interpreter (from the
  repository's root, the example applications importable), and prints what
  the ``.. testoutput::`` after it says;
* every ``>>>`` example runs, one interpreter per page, as ``doctest`` reads it;
* every ``memento ...`` command line in a literal block parses with the
  command's own parser, and ``docs/cli.rst`` names exactly its options;
* ``docs/options.rst`` lists exactly the middleware's options;
* the paste.deploy keys named in ``docs/deployment.rst`` and used in ini
  snippets are the ones the factories accept;
* README.rst's links to the documentation point at pages that exist.

The HTML build itself (warnings as errors) is in ``.ci/run`` and tox's
``docs`` environment; it needs the ``docs`` extra, these tests do not.
"""

from __future__ import annotations

import configparser
import doctest
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from memento import cli, paste, resolver
from memento.options import Options

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.rst"))
SOURCES = [*PAGES, ROOT / "README.rst"]
#: Where snippets run: the example applications are importable from there.
EXAMPLE_PATHS = [ROOT / "examples", ROOT / "examples" / "hello"]

DIRECTIVE = re.compile(
    r"^(?P<indent>\s*)\.\. (?P<name>code-block|code|sourcecode|testcode|testoutput)::"
    r"\s*(?P<arg>\S*)\s*$"
)
LITERAL_START = re.compile(r"::\s*$")
COMMAND = re.compile(r"^(?:\$\s+)?(?:python -m memento|memento)(?:\s|$)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the directive or of the paragraph ending with ``::``
    kind: str  # code-block, testcode, testoutput or literal
    language: str
    text: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _body(lines: list[str], start: int, indent: int) -> tuple[str, int]:
    """The indented block from ``start`` on (options lines skipped); and where it ends."""
    index = start
    while index < len(lines) and re.match(r"^\s+:[\w-]+:", lines[index]):
        index += 1
    body = []
    while index < len(lines):
        line = lines[index]
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
        index += 1
    return textwrap.dedent("\n".join(body)).strip("\n") + "\n", index


def blocks(path: Path) -> list[Block]:
    """The code and literal blocks of one reStructuredText file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    index = 0
    while index < len(lines):
        line = lines[index]
        match = DIRECTIVE.match(line)
        if match:
            indent = len(match["indent"])
            text, end = _body(lines, index + 1, indent)
            language = match["arg"] or ("python" if match["name"] != "testoutput" else "")
            kind = match["name"] if match["name"] in ("testcode", "testoutput") else "code-block"
            found.append(Block(path, index + 1, kind, language, text))
            index = end
            continue
        if LITERAL_START.search(line) and not line.lstrip().startswith(".."):
            indent = len(line) - len(line.lstrip())
            text, end = _body(lines, index + 1, indent)
            if text.strip():
                found.append(Block(path, index + 1, "literal", "", text))
            index = max(end, index + 1)
            continue
        index += 1
    return found


ALL_BLOCKS = [block for path in SOURCES for block in blocks(path)]


def _of(kind: str, language: str | None = None) -> list[Block]:
    return [
        block
        for block in ALL_BLOCKS
        if block.kind == kind and (language is None or block.language == language)
    ]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(path) for path in EXAMPLE_PATHS]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _page(name: str) -> str:
    path = DOCS / f"{name}.rst"
    if not path.is_file():
        pytest.skip(f"no docs/{name}.rst yet")
    return path.read_text(encoding="utf-8")


def test_the_docs_have_pages_and_snippets() -> None:
    names = {path.stem for path in PAGES}
    assert {
        "index", "getting-started", "concepts", "options", "api",
        "frameworks", "deployment", "cli", "benchmarks", "decisions",
    } <= names
    assert _of("code-block", "python")
    assert _of("testcode")


@pytest.mark.parametrize("block", _of("code-block", "python"), ids=str)
def test_python_snippet_compiles(block: Block) -> None:
    compile(block.text, str(block), "exec")


def _testcode_pairs() -> list[tuple[Block, Block | None]]:
    pairs = []
    for index, block in enumerate(ALL_BLOCKS):
        if block.kind != "testcode":
            continue
        following = ALL_BLOCKS[index + 1] if index + 1 < len(ALL_BLOCKS) else None
        output = following if following and following.kind == "testoutput" else None
        pairs.append((block, output))
    return pairs


@pytest.mark.parametrize(("block", "output"), _testcode_pairs(), ids=lambda item: str(item))
def test_testcode_runs(block: Block, output: Block | None) -> None:
    result = _run(block.text)
    assert result.returncode == 0, f"{block} failed:\n{result.stderr}"
    if output is not None:
        checker = doctest.OutputChecker()
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        assert checker.check_output(output.text, result.stdout, flags), (
            f"{block} printed:\n{result.stdout}\nexpected ({output}):\n{output.text}"
        )


DOCTEST_PAGES = [path for path in SOURCES if ">>> " in path.read_text(encoding="utf-8")]


@pytest.mark.parametrize("path", DOCTEST_PAGES, ids=lambda path: path.name)
def test_doctest_examples_run(path: Path) -> None:
    code = (
        "import doctest, sys\n"
        f"failed, tried = doctest.testfile({str(path)!r}, module_relative=False,"
        " optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)\n"
        "sys.exit(1 if failed or not tried else 0)\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stdout + result.stderr


def _command_lines() -> list[tuple[Block, str]]:
    """``memento ...`` lines of literal and shell blocks, continuations joined."""
    found = []
    for block in ALL_BLOCKS:
        if block.kind != "literal" and block.language not in ("console", "sh", "shell", "bash"):
            continue
        text = block.text.replace("\\\n", " ")
        for line in text.splitlines():
            for part in line.split("&&"):
                if COMMAND.match(part.strip()):
                    found.append((block, part.strip()))
    return found


@pytest.mark.parametrize(("block", "line"), _command_lines(), ids=lambda item: str(item))
def test_command_lines_parse(block: Block, line: str) -> None:
    words = shlex.split(line.removeprefix("$ ").strip(), comments=True)
    words = words[3:] if words[:3] == ["python", "-m", "memento"] else words[1:]
    try:
        args = cli.build_parser().parse_args(words)
    except SystemExit as exc:  # argparse: a bad option, or --version
        assert exc.code == 0, f"{block}: {line!r} does not parse"
        return
    statement = resolver.parse(args.resolver)
    app_dir = ROOT / args.app_dir
    if args.app_dir.startswith("examples"):  # the repository's own examples: they exist
        top = statement.module.partition(".")[0]
        assert (app_dir / top).is_dir() or (app_dir / f"{top}.py").is_file(), line
        for path in args.watch:
            assert (ROOT / path).exists(), f"{block}: --watch {path}"


def _parser_options() -> set[str]:
    parser = cli.build_parser()
    return {
        option
        for action in parser._actions  # argparse keeps them there
        for option in action.option_strings
    }


def test_cli_page_names_exactly_the_command_options() -> None:
    text = _page("cli")
    named = set(re.findall(r"``(--?[a-z][\w-]*)", text))
    named |= {flag for pair in re.findall(r"``(-\w)/(--[\w-]+)", text) for flag in pair}
    options = _parser_options() - {"-h", "--help"}
    assert named - _parser_options() == set(), "named in docs/cli.rst, unknown to the command"
    missing = {option for option in options if option.startswith("--")} - named
    assert missing == set(), "options of the command that docs/cli.rst does not name"


def _table_options(text: str) -> set[str]:
    """The first column of the list-tables: ``* - ``name````."""
    return set(re.findall(r"^\s*\* - ``(\w+)``", text, flags=re.MULTILINE))


def test_options_page_lists_exactly_the_options() -> None:
    documented = _table_options(_page("options"))
    documented.discard("option")
    options = set(Options.__dataclass_fields__)
    assert documented - options == set(), "docs/options.rst lists options that do not exist"
    assert options - documented == set(), "options that docs/options.rst does not list"


def _paste_keys() -> set[str]:
    return set(paste._MORI_KEYS | paste._ASSASSIN_KEYS)


def test_paste_keys_named_are_the_keys_accepted() -> None:
    text = _page("deployment")
    match = re.search(r"^Keys: (.*?)\.(?:\s|$)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "docs/deployment.rst: no sentence 'Keys: ...' in the paste.deploy section"
    keys = re.sub(r"\([^)]*\)", "", match[1])  # not the values in parentheses
    named = set(re.findall(r"``(\w+)``", keys))
    assert named - _paste_keys() == set(), "docs/deployment.rst names keys paste does not accept"
    assert _paste_keys() - named == set(), "paste keys that docs/deployment.rst does not name"


@pytest.mark.parametrize(
    "block",
    [block for block in ALL_BLOCKS if block.language == "ini" or "egg:memento#" in block.text],
    ids=str,
)
def test_ini_snippets_use_known_keys(block: Block) -> None:
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(block.text, source=str(block))
    used = [name for name in config.sections() if "egg:memento#" in config[name].get("use", "")]
    for name in used:
        keys = set(config[name]) - {"use"} - set(config.defaults())
        assert keys <= _paste_keys(), f"{block} [{name}]: unknown keys {keys - _paste_keys()}"


def test_api_page_documents_every_public_name() -> None:
    import memento

    text = _page("api")
    documented = set(re.findall(r"^\.\. auto\w+:: (?:memento\.)?(\w+)", text, flags=re.MULTILINE))
    public = set(memento.__all__) - {"__version__"}
    assert public - documented == set(), "public names that docs/api.rst does not document"


def test_readme_links_to_pages_that_exist() -> None:
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    links = re.findall(r"<(docs/[^>]+)>`_", text)
    for link in links:
        assert (ROOT / link.partition("#")[0]).is_file(), link


def test_every_page_is_in_the_table_of_contents() -> None:
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^   ([\w-]+)$", index, flags=re.MULTILINE))
    assert {path.stem for path in PAGES} - {"index"} <= listed
