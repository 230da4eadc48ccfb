"""The command line's numbers: bounded, and a usage error (exit 2) outside."""
import pytest

from refhound import cli


def parse(*argv):
    parser, _ = cli.build_parser()
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("option, value, message", [
    ("--iterations", 2 ** 31, "'2147483648' must be between 1 and 1000"),
    ("--iterations", 1001, "'1001' must be between 1 and 1000"),
    ("--iterations", 0, "'0' must be between 1 and 1000"),
    ("--min-iterations", 2 ** 31, "'2147483648' must be between 1 and 1000"),
    ("--warmup", 2 ** 31, "'2147483648' must be between 0 and 1000"),
    ("--warmup", -1, "'-1' must be between 0 and 1000"),
    ("--calls", 2 ** 31, "'2147483648' must be between 1 and 10000000"),
    ("--calls", 10 ** 40, "must be between 1 and 10000000"),
])
def test_out_of_range_counts_are_usage_errors(option, value, message):
    with pytest.raises(cli.UsageError) as err:
        parse("check", "m:f", option, str(value))
    assert str(err.value).startswith("argument %s: " % option)
    assert message in str(err.value)


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "604801", "1e300"])
def test_out_of_range_timeouts_are_usage_errors(value):
    for command in (["check", "m:f"], ["run"]):
        with pytest.raises(cli.UsageError) as err:
            parse(*(command + ["--timeout", value] + (["x.py"] if command == ["run"] else [])))
        assert str(err.value) == ("argument --timeout: %r must be above 0 and at most 604800 "
                                  "seconds" % value)


def test_not_a_number_of_seconds():
    with pytest.raises(cli.UsageError) as err:
        parse("check", "m:f", "--timeout", "soon")
    assert str(err.value) == "argument --timeout: 'soon' is not a number of seconds"


def test_the_bounds_themselves_are_accepted():
    args = parse("check", "m:f", "--iterations", "1000", "--min-iterations", "1000",
                 "--warmup", "1000", "--calls", "10000000", "--timeout", "604800")
    assert (args.iterations, args.min_iterations, args.warmup, args.calls, args.timeout) == \
        (1000, 1000, 1000, 10 ** 7, 604800.0)
    args = parse("check", "m:f", "--warmup", "0", "--timeout", "0.5")
    assert (args.warmup, args.timeout, args.calls) == (0, 0.5, None)
    assert parse("check", "m:f").timeout is None
    assert parse("run", "--timeout", "2", "x.py").timeout == 2.0


def test_main_prints_one_line_and_returns_2(capsys):
    assert cli.main(["check", "m:f", "--iterations", str(2 ** 31)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("refhound: error: argument --iterations: '2147483648' must be between "
                   "1 and 1000\n")


def test_help_states_the_bounds(capsys):
    with pytest.raises(SystemExit):
        parse("check", "--help")
    text = " ".join(capsys.readouterr()[0].split())
    assert "(default 60, at most 1000; stops early when sure)" in text
    assert "(default 8; 3 to 1000)" in text
    assert "(default 3, at most 1000)" in text
    assert "at most 10000000)" in text
    assert "(exit status 3; default: no limit, at most 604800)" in text
    assert ("exit status: 0 clean, 1 leak or error found, 2 bad usage or input, 3 the target "
            "failed (it raised, crashed, ended the process or ran past --timeout)") in text
