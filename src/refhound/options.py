"""The options of a leak check: one table, defaults and limits written once.

Every front end takes its options from here: `refhound check` and
`refhound run` build their command-line flags from FIELDS, `refhound.check`
/ `refhound.Checker` / `refhound.loop` take them as keyword arguments, and
`pytest --refhound` reads them from its command line, its ini file and the
`@pytest.mark.refhound(...)` marker.  Validation is `Options.validate()`;
it raises OptionError with one line naming the problem.
"""

MAX_COUNT = 1_000_000          # iterations, warm-up
MAX_CALLS = 1_000_000_000      # calls per iteration
SANITIZE_RATE = 1              # --sanitize guards every block while the budget lasts


class OptionError(ValueError):
    """An option with a value that makes no sense (one line, for the user)."""


class Field:
    """One option: name, kind, default, bounds, pytest default, help text.

    kind: "count" (whole number), "calls" (whole number or None = calibrated),
    "seconds" (number or None = no limit), "alpha" (probability), "flag".
    """

    def __init__(self, name, kind, default, low=None, high=None, help="",
                 pytest_default=None, cli=True):
        self.name = name
        self.kind = kind
        self.default = default
        self.low = low
        self.high = high
        self.help = help
        self.pytest_default = default if pytest_default is None else pytest_default
        self.cli = cli

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    def check(self, value):
        """The value, validated (OptionError otherwise)."""
        name = self.flag[2:]
        if self.kind == "flag":
            if not isinstance(value, bool):
                raise OptionError("%s=%r must be True or False" % (name, value))
            return value
        if value is None and self.kind in ("calls", "seconds"):
            return None
        if self.kind in ("count", "calls"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise OptionError("%s=%r is not a whole number" % (name, value))
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise OptionError("%s=%r is not a number" % (name, value))
        if self.low is not None and value < self.low:
            raise OptionError("%s=%r must be at least %s" % (name, value, self.low))
        if self.high is not None and value > self.high:
            raise OptionError("%s=%r must be at most %s" % (name, value, self.high))
        return value

    def parse(self, text):
        """A value from the command line or an ini file (OptionError if bad)."""
        text = str(text).strip()
        if self.kind == "flag":
            return text.lower() in ("1", "true", "yes", "on")
        if self.kind == "calls" and text == "auto":
            return None
        try:
            value = int(text) if self.kind in ("count", "calls") else float(text)
        except ValueError:
            raise OptionError("%s=%r is not a %s" % (
                self.flag[2:], text,
                "whole number" + (" or 'auto'" if self.kind == "calls" else "")
                if self.kind in ("count", "calls") else "number"))
        return self.check(value)


FIELDS = (
    Field("warmup", "count", 3, 0, MAX_COUNT, pytest_default=2,
          help="warm-up iterations before measuring"),
    Field("iterations", "count", 60, 1, MAX_COUNT, pytest_default=30,
          help="at most N measured iterations (the check stops earlier when it is sure)"),
    Field("min_iterations", "count", 8, 3, MAX_COUNT,
          help="at least N measured iterations"),
    Field("calls", "calls", None, 1, MAX_CALLS,
          help="calls per iteration (default: calibrated, a power of ten giving about "
               "`iteration_seconds` per iteration)"),
    # 1,000, not more: patience watches ten times the calls a growth was
    # seen over, so a leak checked at 10,000 calls per iteration kept
    # millions of objects and the walks over them slowed the check tenfold
    # (the demo: 70 s instead of 4).
    Field("max_calls", "count", 1_000, 1, MAX_CALLS, pytest_default=100, cli=False,
          help="the most calls per iteration that calibration picks"),
    Field("iteration_seconds", "seconds", 0.005, 1e-6, 3600.0, cli=False,
          help="the time one iteration should take when calls are calibrated"),
    Field("alpha", "alpha", 0.001, 1e-12, 0.2, cli=False,
          help="significance of the trend test"),
    Field("diagnose", "count", 3, 0, 1000, cli=False,
          help="iterations with refcount snapshots after a leak (objects whose count moves)"),
    Field("attribution", "flag", True, cli=False,
          help="after a leak, record allocation stacks and name the culprit lines"),
    Field("native", "flag", True, cli=False,
          help="also track malloc & co., strdup and C++ new/delete called by extension "
               "modules and the libraries they load (--no-native turns it off)"),
    Field("patience", "seconds", 10.0, 0.0, 10 * 24 * 3600.0, pytest_default=5.0,
          help="seconds a check may spend making sure that growth persists (or settles) "
               "over ten times the calls it was seen in, before it says leak, error or "
               "inconclusive"),
    Field("timeout", "seconds", None, 0.001, 10 * 24 * 3600.0,
          help="end a check that runs longer than this many seconds (exit 3)"),
    Field("strict", "flag", False, cli=False,
          help="treat an inconclusive result as a failure"),
)
FIELD = {f.name: f for f in FIELDS}


class Options:
    """Validated options of one check.  Options(iterations=100, calls=10)."""

    __slots__ = tuple(f.name for f in FIELDS)

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(FIELD))
        if unknown:
            raise OptionError("unknown option %r (options: %s)"
                              % (unknown[0], ", ".join(FIELD)))
        for f in FIELDS:
            setattr(self, f.name, kwargs.get(f.name, f.default))
        self.validate()

    @classmethod
    def for_pytest(cls, **kwargs):
        """The defaults of `pytest --refhound` (fewer iterations, at most 100
        calls: a test body is slower than a function), then kwargs."""
        values = {f.name: f.pytest_default for f in FIELDS}
        values.update(kwargs)
        return cls(**values)

    def validate(self):
        for f in FIELDS:
            setattr(self, f.name, f.check(getattr(self, f.name)))
        if self.min_iterations > self.iterations:
            raise OptionError("%s (%d) is above %s (%d)" % (
                FIELD["min_iterations"].flag, self.min_iterations,
                FIELD["iterations"].flag, self.iterations))
        return self

    def replace(self, **kwargs):
        values = self.to_dict()
        values.update(kwargs)
        return Options(**values)

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in FIELDS}

    def __repr__(self):
        return "Options(%s)" % ", ".join("%s=%r" % kv for kv in self.to_dict().items())


# ---------------------------------------------------------------------------
# Command lines


def add_arguments(parser, names=None):
    """Add the check's options to an argparse parser (the CLI's flags)."""
    for f in FIELDS:
        if not f.cli or (names is not None and f.name not in names):
            continue
        default = f.default
        shown = {None: "none" if f.kind == "seconds" else "calibrated"}.get(default, default)
        metavar = "SECONDS" if f.kind == "seconds" else "N"
        parser.add_argument(f.flag, dest=f.name, type=_argparse_type(f), default=default,
                            metavar=metavar,
                            help="%s (default %s%s)" % (
                                f.help, shown,
                                "; at most %s" % f.high if f.high and f.kind != "seconds"
                                else ""))


def _argparse_type(field):
    import argparse

    def parse(text):
        try:
            return field.parse(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc))
    parse.__name__ = field.name
    return parse


def from_namespace(ns, **extra):
    """Options from an argparse namespace (the fields it has) and extra."""
    values = {f.name: getattr(ns, f.name) for f in FIELDS if hasattr(ns, f.name)}
    values.update(extra)
    return Options(**values)
