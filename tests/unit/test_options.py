"""The options of a check (src/refhound/options.py): defaults, limits and
messages written once for every front end."""
import argparse

import pytest

from refhound import options as O
from refhound.options import OptionError, Options


def test_defaults():
    o = Options()
    assert (o.warmup, o.iterations, o.min_iterations, o.calls) == (3, 60, 8, None)
    assert (o.max_calls, o.alpha, o.diagnose, o.attribution) == (1_000, 0.001, 3, True)
    assert o.timeout is None and o.strict is False


def test_pytest_defaults_are_lighter():
    o = Options.for_pytest()
    assert (o.warmup, o.iterations, o.max_calls) == (2, 30, 100)
    assert Options.for_pytest(iterations=50).iterations == 50


@pytest.mark.parametrize("kwargs, message", [
    ({"iterations": 0}, "iterations=0 must be at least 1"),
    ({"iterations": 2**31}, "iterations=2147483648 must be at most 1000000"),
    ({"calls": 0}, "calls=0 must be at least 1"),
    ({"calls": 2**40}, "calls=1099511627776 must be at most 1000000000"),
    ({"min_iterations": 2}, "min-iterations=2 must be at least 3"),
    ({"warmup": -1}, "warmup=-1 must be at least 0"),
    ({"iterations": 2.5}, "iterations=2.5 is not a whole number"),
    ({"iterations": True}, "iterations=True is not a whole number"),
    ({"alpha": 0.9}, "alpha=0.9 must be at most 0.2"),
    ({"alpha": float("nan")}, "alpha=nan is not a number"),
    ({"timeout": 0}, "timeout=0 must be at least 0.001"),
    ({"attribution": "yes"}, "attribution='yes' must be True or False"),
    ({"min_iterations": 20, "iterations": 10},
     "--min-iterations (20) is above --iterations (10)"),
    ({"itrations": 5}, "unknown option 'itrations'"),
])
def test_bad_values_raise_one_line(kwargs, message):
    with pytest.raises(OptionError) as info:
        Options(**kwargs)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_replace_validates_and_keeps_the_rest():
    o = Options(iterations=100, calls=7)
    p = o.replace(calls=11)
    assert (p.iterations, p.calls, o.calls) == (100, 11, 7)
    with pytest.raises(OptionError):
        o.replace(calls=-1)


def test_to_dict_round_trips():
    o = Options(iterations=90, timeout=2.5, strict=True)
    assert Options(**o.to_dict()).to_dict() == o.to_dict()


@pytest.mark.parametrize("name, text, value", [
    ("iterations", "40", 40), ("calls", "auto", None), ("calls", "1000", 1000),
    ("timeout", "1.5", 1.5), ("strict", "yes", True), ("strict", "0", False),
])
def test_parse_from_text(name, text, value):
    assert O.FIELD[name].parse(text) == value


@pytest.mark.parametrize("name, text, message", [
    ("iterations", "many", "iterations='many' is not a whole number"),
    ("calls", "lots", "calls='lots' is not a whole number or 'auto'"),
    ("timeout", "soon", "timeout='soon' is not a number"),
    ("iterations", str(2**31), "iterations=2147483648 must be at most"),
])
def test_parse_errors(name, text, message):
    with pytest.raises(OptionError) as info:
        O.FIELD[name].parse(text)
    assert str(info.value).startswith(message)


def _parser():
    p = argparse.ArgumentParser()
    O.add_arguments(p)
    return p


def test_command_line_flags_come_from_the_table():
    flags = {a.option_strings[0] for a in _parser()._actions if a.option_strings}
    assert {"--warmup", "--iterations", "--min-iterations", "--calls", "--timeout"} <= flags
    assert "--alpha" not in flags      # not a command-line option


def test_namespace_to_options():
    ns = _parser().parse_args(["--iterations", "12", "--calls", "100", "--timeout", "3"])
    o = O.from_namespace(ns)
    assert (o.iterations, o.calls, o.timeout) == (12, 100, 3.0)


def test_bad_flag_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--iterations", "99999999999"])
    assert info.value.code == 2
    assert "--iterations: iterations=99999999999 must be at most 1000000" in \
        capsys.readouterr().err
