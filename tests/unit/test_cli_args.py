"""The command line's numbers: bounded, and a usage error (exit 2) outside.
The check's options take their bounds from options.FIELDS."""
import pytest

from refhound import cli
from refhound.options import FIELD


def parse(*argv):
    parser, _ = cli.build_parser()
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("option, value", [
    ("--iterations", FIELD["iterations"].high + 1),
    ("--iterations", 0),
    ("--min-iterations", 2),
    ("--warmup", -1),
    ("--calls", 0),
    ("--calls", 10 ** 40),
])
def test_out_of_range_counts_are_usage_errors(option, value):
    with pytest.raises(cli.UsageError) as err:
        parse("check", "m:f", option, str(value))
    assert str(err.value).startswith("argument %s: %s=%d must be at " % (option, option[2:],
                                                                        value))


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "1e300"])
def test_out_of_range_timeouts_are_usage_errors(value):
    for command in (["check", "m:f"], ["run"]):
        with pytest.raises(cli.UsageError) as err:
            parse(*(command + ["--timeout", value] + (["x.py"] if command == ["run"] else [])))
        assert str(err.value).startswith("argument --timeout: timeout=")


def test_not_a_number_of_seconds():
    with pytest.raises(cli.UsageError) as err:
        parse("check", "m:f", "--timeout", "soon")
    assert str(err.value) == "argument --timeout: timeout='soon' is not a number"


def test_the_bounds_themselves_are_accepted():
    high = FIELD["iterations"].high
    args = parse("check", "m:f", "--iterations", str(high), "--min-iterations", str(high),
                 "--warmup", "0", "--calls", str(FIELD["calls"].high), "--timeout", "0.5")
    assert (args.iterations, args.min_iterations, args.warmup, args.calls, args.timeout) == \
        (high, high, 0, FIELD["calls"].high, 0.5)
    assert parse("check", "m:f").timeout is None
    assert parse("run", "--timeout", "2", "x.py").timeout == 2.0


def test_main_prints_one_line_and_returns_2(capsys):
    assert cli.main(["check", "m:f", "--iterations", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "refhound: error: argument --iterations: iterations=0 must be at least 1\n"


def test_valgrind_quarantine_is_bytes():
    args = parse("valgrind", "--quarantine", str(50 * 10 ** 6), "--", "true")
    assert args.quarantine == 50 * 10 ** 6
    with pytest.raises(cli.UsageError):
        parse("valgrind", "--quarantine", "-1", "--", "true")


def test_help_states_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        parse("check", "--help")
    text = " ".join(capsys.readouterr()[0].split())
    assert "at most %d" % FIELD["iterations"].high in text
    assert ("exit status: 0 clean, 1 leak or error found, 2 bad usage or input, 3 the target "
            "failed (it raised, crashed, ended the process or ran past --timeout)") in text
