from __future__ import annotations

import logging

import pytest

from memento.options import Options, as_bool, as_list, as_seconds, as_watch


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), ("true", True), ("Yes", True), ("on", True), ("1", True),
     (False, False), ("false", False), ("off", False), ("0", False), ("no", False)],
)
def test_as_bool(value, expected):
    assert as_bool(value, "reload") is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, [], "tru"])
def test_as_bool_names_the_key_and_value(value):
    with pytest.raises(ValueError, match=r"^reload: expected a boolean, got "):
        as_bool(value, "reload")


def test_as_list_splits_on_whitespace_and_commas():
    assert as_list("a, b\n  c,d", "packages") == ("a", "b", "c", "d")
    assert as_list(["a", "b"], "packages") == ("a", "b")
    assert as_list(None, "packages") == ()
    with pytest.raises(ValueError, match="packages"):
        as_list([1], "packages")


@pytest.mark.parametrize("value", [-1, "-1", "soon", float("nan"), float("inf"), True, None])
def test_as_seconds_refuses(value):
    with pytest.raises(ValueError, match=r"^interval: expected seconds >= 0, got "):
        as_seconds(value, "interval")


def test_as_seconds_reads_numbers():
    assert as_seconds("0.5", "interval") == 0.5
    assert as_seconds(0, "interval") == 0.0


def test_as_watch(tmp_path, caplog):
    (tmp_path / "a.html").write_text("")
    assert as_watch([str(tmp_path)]) == (str(tmp_path),)
    assert as_watch([tmp_path]) == as_watch(tmp_path) == (str(tmp_path),)
    with caplog.at_level(logging.WARNING, logger="memento"):
        as_watch(str(tmp_path / "*.txt"))
    assert "matches no file" in caplog.text
    with pytest.raises(ValueError, match="nothere"):
        as_watch(str(tmp_path / "nothere"))
    with pytest.raises(ValueError, match="nodir"):
        as_watch(str(tmp_path / "nodir" / "*.html"))


def test_options_read_validates_and_refuses_unknown_names():
    options = Options.read(reload_on="Manual", on_error="keep", keep="a b")
    assert (options.reload_on, options.on_error, options.keep) == ("manual", "keep", ("a", "b"))
    with pytest.raises(TypeError, match="'colour'"):
        Options.read(colour="blue")
    handler = lambda info, environ, start_response: []  # noqa: E731
    assert Options.read(on_error=handler).on_error is handler
