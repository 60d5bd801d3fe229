"""The 500 page served while the application's code fails to reload.

Pure functions, values in and values out: :func:`respond` picks the variant
for a request, :func:`render` builds the status, headers and body. Tracebacks
and source lines are for loopback clients only, unless told otherwise; other
clients see the exception and the changed files, with paths cut to base names.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import itertools
import linecache
import os
import re
import string
import sys
import sysconfig
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from html import escape

from ._compat import resources_files
from .integrations import RestartNeeded

STATUS = "500 Internal Server Error"
TITLE = "memento: reload failed"
RESTART_TITLE = "memento: restart needed"

_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"
_HIDDEN = (
    "Details are hidden: tracebacks and source lines are shown to loopback "
    "clients only (option show_tracebacks)."
)
_NO_CHANGE = "No changed file: the first import, or a reload asked for by hand."
_STR_FAILED = "<exception str() failed>"
_CONTEXT_LINES = 2
_REPEATS_SHOWN = 3  # as Python's own tracebacks, for a deep recursion

# Frames from these folders are shown dimmed: the user's own code stands out.
_LIBRARY_KEYS = ("stdlib", "platstdlib", "purelib", "platlib")
_LIBRARY_DIRS = tuple(
    {os.path.dirname(os.path.abspath(__file__))}
    | {path for key, path in sysconfig.get_paths().items() if key in _LIBRARY_KEYS}
)

# Characters that end a path inside an exception message.
_STOP = r"""\s'"<>,;()\[\]{}"""
_PATH_TAIL = rf"(?:[/\\][^{_STOP}]*)?(?![^{_STOP}/\\])"


@dataclasses.dataclass(frozen=True)
class _Frame:
    filename: str
    lineno: int | None
    name: str
    line: str
    library: bool
    repeated: int = 0  # identical frames that follow and are not shown


@dataclasses.dataclass(frozen=True)
class _Syntax:
    filename: str | None
    lineno: int | None
    text: str | None
    offset: int | None
    end_lineno: int | None
    end_offset: int | None


@dataclasses.dataclass(frozen=True)
class _Link:
    """One exception of the chain, with the sentence leading to the next one."""

    kind: str
    message: str
    notes: tuple[str, ...]
    frames: tuple[_Frame, ...]
    syntax: _Syntax | None
    connector: str


@dataclasses.dataclass(frozen=True)
class _Report:
    links: tuple[_Link, ...]  # oldest first, as Python prints them
    changed: tuple[str, ...]
    formatted: str  # the traceback as Python formats it
    heading: str = TITLE

    @property
    def last(self) -> _Link:
        return self.links[-1]


def is_loopback(environ: Mapping[str, object]) -> bool:
    """Whether the request comes from this machine (127.0.0.0/8 or ::1).

    A missing or unparsable ``REMOTE_ADDR`` is not loopback.
    """
    value = environ.get("REMOTE_ADDR")
    if not isinstance(value, str):
        return False
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def wants_html(accept: str | None) -> bool:
    """Whether an ``Accept`` header prefers ``text/html`` to ``text/plain``.

    The higher q-value wins; on a tie the more specific media range wins, then
    the one listed first. A missing header, ``*/*`` and ``text/*`` get text.
    """
    if not accept:
        return False
    ranges = list(_media_ranges(accept))
    html_q, html_rank = _quality(ranges, "text/html")
    plain_q, plain_rank = _quality(ranges, "text/plain")
    if html_q != plain_q:
        return html_q > plain_q
    return html_q > 0 and html_rank > plain_rank


def render(
    error: BaseException,
    changed: Sequence[str],
    *,
    html: bool,
    show_traceback: bool,
    generation: int | None = None,
) -> tuple[str, list[tuple[str, str]], bytes]:
    """The error page for ``error``, as ``(status, headers, body)``.

    ``changed``: the files whose change started the failed reload.
    ``html``: HTML or plain text. ``show_traceback``: include the traceback and
    source lines and full paths; without it paths, in the exception message
    too, are cut to their base names. ``generation``: the number of the code
    generation that failed to load, shown when given.
    """
    report = _report(error, changed)
    if html:
        page = _html_page(report, show_traceback, generation)
        content_type = "text/html; charset=utf-8"
    else:
        page = _text_page(report, show_traceback, generation)
        content_type = "text/plain; charset=utf-8"
    body = page.encode("utf-8", "backslashreplace")
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Memento-Error", "1"),
    ]
    return STATUS, headers, body


def respond(
    error: BaseException,
    changed: Sequence[str],
    environ: Mapping[str, object],
    show_tracebacks: bool | None,
    generation: int | None = None,
) -> tuple[str, list[tuple[str, str]], bytes]:
    """The error page for one request, as ``(status, headers, body)``.

    HTML when the request's ``Accept`` header prefers it, else plain text.
    ``show_tracebacks``: ``None`` shows them to loopback clients only.
    """
    accept = environ.get("HTTP_ACCEPT")
    if show_tracebacks is None:
        show_tracebacks = is_loopback(environ)
    return render(
        error,
        changed,
        html=wants_html(accept if isinstance(accept, str) else None),
        show_traceback=show_tracebacks,
        generation=generation,
    )


# -- content negotiation ----------------------------------------------------


def _media_ranges(accept: str) -> Iterator[tuple[str, float, int]]:
    """``(media range, q, position)`` for each well-formed entry."""
    for position, item in enumerate(accept.split(",")):
        media, *params = item.split(";")
        media = media.strip().lower()
        kind, slash, subtype = media.partition("/")
        if not (kind and slash and subtype):
            continue
        quality = _q_value(params)
        if quality is not None:
            yield media, quality, position


def _q_value(params: list[str]) -> float | None:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() != "q":
            continue
        try:
            quality = float(value.strip())
        except ValueError:
            return None
        return quality if 0 <= quality <= 1 else None
    return 1.0


def _quality(
    ranges: list[tuple[str, float, int]], media: str
) -> tuple[float, tuple[int, int]]:
    """The q-value of the most specific range matching ``media`` and its rank."""
    kind = media.partition("/")[0]
    specificity = {media: 3, f"{kind}/*": 2, "*/*": 1}
    best: tuple[float, tuple[int, int]] = (0.0, (0, 0))
    for candidate, quality, position in ranges:
        rank = (specificity.get(candidate, 0), -position)
        if rank[0] and rank > best[1]:
            best = (quality, rank)
    return best


# -- what the page says -----------------------------------------------------


def _report(error: BaseException, changed: Sequence[str]) -> _Report:
    summary = traceback.TracebackException.from_exception(error)
    links = tuple(reversed(list(_links(error, summary))))
    formatted = "".join(summary.format())
    heading = RESTART_TITLE if isinstance(error, RestartNeeded) else TITLE
    return _Report(links, tuple(os.fspath(path) for path in changed), formatted, heading)


def _links(
    error: BaseException, summary: traceback.TracebackException
) -> Iterator[_Link]:
    """The chain from ``error`` back to its first cause, newest first."""
    exc: BaseException | None = error
    current: traceback.TracebackException | None = summary
    connector = ""
    while exc is not None and current is not None:
        yield _link(exc, current, connector)
        if current.__cause__ is not None:
            exc, current, connector = exc.__cause__, current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            exc, current, connector = exc.__context__, current.__context__, _CONTEXT
        else:
            break


def _link(
    exc: BaseException, summary: traceback.TracebackException, connector: str
) -> _Link:
    frames = tuple(_frames(summary.stack))
    syntax = _syntax(exc) if isinstance(exc, SyntaxError) else None
    return _Link(_kind(exc), _message(exc), _notes(exc), frames, syntax, connector)


def _frames(stack: traceback.StackSummary) -> Iterator[_Frame]:
    """The frames, a run of identical ones cut short after a few."""
    same = itertools.groupby(stack, key=lambda f: (f.filename, f.lineno, f.name))
    for _, run in same:
        summaries = list(run)
        shown = [_frame(summary) for summary in summaries[:_REPEATS_SHOWN]]
        hidden = len(summaries) - len(shown)
        if hidden:
            shown[-1] = dataclasses.replace(shown[-1], repeated=hidden)
        yield from shown


def _frame(summary: traceback.FrameSummary) -> _Frame:
    return _Frame(
        summary.filename,
        summary.lineno,
        summary.name,
        (summary.line or "").strip(),
        _is_library(summary.filename),
    )


def _kind(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _message(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.msg:
        return str(exc.msg)
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not break the error page
        return _STR_FAILED


def _notes(exc: BaseException) -> tuple[str, ...]:
    notes = getattr(exc, "__notes__", None)
    if not isinstance(notes, (list, tuple)):
        return ()
    return tuple(note for note in notes if isinstance(note, str))


def _syntax(exc: SyntaxError) -> _Syntax:
    return _Syntax(
        exc.filename if isinstance(exc.filename, str) else None,
        exc.lineno if isinstance(exc.lineno, int) else None,
        exc.text.rstrip("\r\n") if isinstance(exc.text, str) else None,
        exc.offset if isinstance(exc.offset, int) else None,
        _int_or_none(getattr(exc, "end_lineno", None)),
        _int_or_none(getattr(exc, "end_offset", None)),
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _is_library(filename: str) -> bool:
    if filename.startswith("<"):
        return True
    return any(filename.startswith(folder + os.sep) for folder in _LIBRARY_DIRS)


def _basename(path: str) -> str:
    return re.split(r"[/\\]", path.rstrip("/\\"))[-1] or path


def _where(syntax: _Syntax, show_traceback: bool) -> str:
    """``views.py, line 3`` for a syntax error, as much as is known."""
    parts = []
    if syntax.filename:
        parts.append(syntax.filename if show_traceback else _basename(syntax.filename))
    if syntax.lineno is not None:
        parts.append(f"line {syntax.lineno}")
    return ", ".join(parts)


def _raised_at(link: _Link) -> _Frame | None:
    return link.frames[-1] if link.frames and link.syntax is None else None


# -- hiding paths from remote clients --------------------------------------


def _path_pattern(report: _Report) -> re.Pattern[str] | None:
    """Known files, their folders and ``sys.path`` entries, Python's prefixes."""
    files = {frame.filename for link in report.links for frame in link.frames}
    files.update(link.syntax.filename or "" for link in report.links if link.syntax)
    files.update(report.changed)
    files = {path for path in files if os.path.isabs(path) and _basename(path) != path}
    folders = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    folders.update(os.path.dirname(path) for path in files)
    folders.update(entry for entry in sys.path if _holds_any(entry, files))
    folders = {path.rstrip("/\\") for path in folders if os.path.isabs(path)}
    folders = {path for path in folders if _basename(path) != path}
    if not files and not folders:
        return None
    alternatives = [re.escape(path) for path in _longest_first(files)]
    alternatives += [re.escape(path) + _PATH_TAIL for path in _longest_first(folders)]
    return re.compile(r"(?<![\w.~-])(?:" + "|".join(alternatives) + ")")


def _longest_first(paths: set[str]) -> list[str]:
    return sorted(paths, key=lambda path: (-len(path), path))


def _holds_any(entry: str, files: Iterable[str]) -> bool:
    if not entry or not os.path.isabs(entry):
        return False
    folder = entry.rstrip("/\\") + os.sep
    return any(path.startswith(folder) for path in files)


def _scrub(text: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is None:
        return text
    return pattern.sub(lambda match: _basename(match.group(0)), text)


# -- syntax error excerpt ---------------------------------------------------


def _excerpt(syntax: _Syntax) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Lines around the offending one, when the file still reads as parsed."""
    if not syntax.filename or syntax.lineno is None or syntax.text is None:
        return [], []
    linecache.checkcache(syntax.filename)
    lines = [line.rstrip("\r\n") for line in linecache.getlines(syntax.filename)]
    index = syntax.lineno - 1
    if not 0 <= index < len(lines) or lines[index] != syntax.text:
        return [], []
    start = max(0, index - _CONTEXT_LINES)
    before = [(number + 1, lines[number]) for number in range(start, index)]
    stop = min(len(lines), index + 1 + _CONTEXT_LINES)
    after = [(number + 1, lines[number]) for number in range(index + 1, stop)]
    return before, after


def _caret_span(syntax: _Syntax) -> tuple[int, int] | None:
    """The columns ``[start, stop)`` the parser points at on the offending line."""
    text = syntax.text
    if text is None or not syntax.offset or syntax.offset < 1:
        return None
    start = min(syntax.offset, len(text) + 1) - 1
    stop = start + 1
    same_line = syntax.end_lineno in (None, syntax.lineno)
    if syntax.end_offset and same_line and syntax.end_offset - 1 > start:
        stop = min(syntax.end_offset - 1, max(len(text), start + 1))
    return start, stop


def _caret_line(text: str, span: tuple[int, int]) -> str:
    start, stop = span
    # Keep tabs so the carets line up under the same tab stops.
    padding = "".join("\t" if char == "\t" else " " for char in text[:start])
    return padding + "^" * (stop - start)


# -- templates --------------------------------------------------------------


@functools.cache
def _template(name: str) -> string.Template:
    resource = resources_files(__package__ or "memento") / "templates" / name
    return string.Template(resource.read_text(encoding="utf-8"))


# -- HTML -------------------------------------------------------------------


def _html_page(report: _Report, show_traceback: bool, generation: int | None) -> str:
    last = report.last
    pattern = None if show_traceback else _path_pattern(report)
    if show_traceback:
        details = _html_traceback(report)
    else:
        details = f'<section class="card note"><p>{escape(_HIDDEN)}</p></section>'
    return _template("error.html").substitute(
        title=escape(f"{report.heading}: {last.kind}"),
        heading=escape(report.heading),
        status=escape(STATUS),
        generation=_html_generation(generation),
        kind=escape(last.kind),
        message=escape(_scrub(last.message, pattern)),
        notes=_html_notes(last.notes, pattern),
        where=_html_where(last, show_traceback),
        changed=_html_changed(report.changed, show_traceback),
        details=details,
    )


def _html_generation(generation: int | None) -> str:
    if generation is None:
        return ""
    return f'<span class="generation">generation {generation}</span>'


def _html_notes(notes: tuple[str, ...], pattern: re.Pattern[str] | None) -> str:
    if not notes:
        return ""
    return "".join(
        f'<p class="note-line">{escape(_scrub(note, pattern))}</p>' for note in notes
    )


def _html_where(link: _Link, show_traceback: bool) -> str:
    if link.syntax is not None:
        return _html_syntax_where(link.syntax, show_traceback)
    frame = _raised_at(link)
    if frame is None or not show_traceback:
        return ""
    return (
        f'<p class="where">raised in <code>{escape(frame.filename)}</code>, '
        f"line {_lineno(frame)}, in <code>{escape(frame.name)}</code></p>"
    )


def _html_syntax_where(syntax: _Syntax, show_traceback: bool) -> str:
    parts = []
    if syntax.filename:
        shown = syntax.filename if show_traceback else _basename(syntax.filename)
        parts.append(f"<code>{escape(shown)}</code>")
    if syntax.lineno is not None:
        parts.append(f"line {syntax.lineno}")
    return f'<p class="where">in {", ".join(parts)}</p>' if parts else ""


def _html_changed(changed: tuple[str, ...], show_traceback: bool) -> str:
    if not changed:
        return f'<p class="muted">{escape(_NO_CHANGE)}</p>'
    items = "".join(
        f"<li><code>{escape(path if show_traceback else _basename(path))}</code></li>"
        for path in changed
    )
    return f'<ul class="files">{items}</ul>'


def _html_traceback(report: _Report) -> str:
    parts = []
    for link in report.links:
        parts.append(_html_link(link))
        if link.connector:
            parts.append(f'<p class="connector">{escape(link.connector)}</p>')
    body = "".join(parts)
    return (
        '<section class="card traceback"><h2>Traceback '
        '<span class="muted">(most recent call last)</span></h2>'
        f"{body}</section>"
    )


def _html_link(link: _Link) -> str:
    frames = _html_frames(link)
    if link.syntax is not None:
        frames += _html_syntax(link.syntax)
    notes = "".join(f'<p class="note-line">{escape(note)}</p>' for note in link.notes)
    return (
        f'<div class="exception"><ol class="frames">{frames}</ol>'
        f'<p class="raised"><span class="kind">{escape(link.kind)}</span>: '
        f"{escape(link.message)}</p>{notes}</div>"
    )


def _html_frames(link: _Link) -> str:
    """One box per frame of the user's code; runs of library frames share one."""
    raised_at = _raised_at(link)
    items = []
    runs = itertools.groupby(
        link.frames, key=lambda f: f.library and f is not raised_at
    )
    for library, run in runs:
        if library:
            inner = "".join(_html_frame(frame) for frame in run)
            items.append(f'<li class="frame library">{inner}</li>')
            continue
        for frame in run:
            classes = "frame failing" if frame is raised_at else "frame"
            items.append(f'<li class="{classes}">{_html_frame(frame)}</li>')
    return "".join(items)


def _html_frame(frame: _Frame) -> str:
    source = f'<pre class="source">{escape(frame.line)}</pre>' if frame.line else ""
    if frame.repeated:
        times = "time" if frame.repeated == 1 else "times"
        source += (
            f'<p class="repeated">[Previous frame repeated {frame.repeated} more '
            f"{times}]</p>"
        )
    return (
        f'<div class="location">File "<span class="path">'
        f'{escape(frame.filename)}</span>", '
        f'line <span class="lineno">{_lineno(frame)}</span>, '
        f'in <span class="function">{escape(frame.name)}</span></div>{source}'
    )


def _lineno(frame: _Frame) -> str:
    return "?" if frame.lineno is None else str(frame.lineno)


def _html_syntax(syntax: _Syntax) -> str:
    location = escape(syntax.filename or "<unknown>")
    lineno = "?" if syntax.lineno is None else str(syntax.lineno)
    head = (
        f'<div class="location">File "<span class="path">{location}</span>", '
        f'line <span class="lineno">{lineno}</span></div>'
    )
    if syntax.text is None:
        return f'<li class="frame failing">{head}</li>'
    before, after = _excerpt(syntax)
    rows = [_html_row(number, escape(text), "") for number, text in before]
    rows.append(_html_offending(syntax))
    rows += [_html_row(number, escape(text), "") for number, text in after]
    excerpt = "".join(rows)
    return f'<li class="frame failing">{head}<div class="excerpt">{excerpt}</div></li>'


def _html_offending(syntax: _Syntax) -> str:
    text = syntax.text or ""
    span = _caret_span(syntax)
    if span is None:
        return _html_row(syntax.lineno, escape(text), " offending")
    start, stop = span
    marked = (
        f'{escape(text[:start])}<span class="bad">{escape(text[start:stop])}</span>'
        f"{escape(text[stop:])}"
    )
    caret = _html_row(None, escape(_caret_line(text, span)), " caret")
    return _html_row(syntax.lineno, marked, " offending") + caret


def _html_row(number: int | None, code: str, extra_class: str) -> str:
    gutter = "" if number is None else str(number)
    return (
        f'<div class="row{extra_class}"><span class="gutter">{gutter}</span>'
        f'<span class="code">{code}</span></div>'
    )


# -- plain text -------------------------------------------------------------


def _text_page(report: _Report, show_traceback: bool, generation: int | None) -> str:
    last = report.last
    pattern = None if show_traceback else _path_pattern(report)
    summary = [f"{last.kind}: {_scrub(last.message, pattern)}"]
    summary += [_scrub(note, pattern) for note in last.notes]
    if last.syntax is not None and _where(last.syntax, show_traceback):
        summary.append(f"  in {_where(last.syntax, show_traceback)}")
    details = report.formatted.rstrip("\n") if show_traceback else _HIDDEN
    return _template("error.txt").substitute(
        heading=report.heading
        if generation is None
        else f"{report.heading} (generation {generation})",
        summary="\n".join(summary),
        changed=_text_changed(report.changed, show_traceback),
        details=details,
    )


def _text_changed(changed: tuple[str, ...], show_traceback: bool) -> str:
    if not changed:
        return f"  {_NO_CHANGE}"
    shown = changed if show_traceback else tuple(_basename(path) for path in changed)
    return "\n".join(f"  {path}" for path in shown)
