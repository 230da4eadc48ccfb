"""The `refhound` command: parse the command line, dispatch to a command.

Each command lives in refhound/commands/<name>.py with two functions:
`add_parser(subparsers)` and `run(args) -> exit status`.  Add its name to
COMMANDS to register it.

Exit status: 0 clean, 1 leak or error found, 2 bad usage or input (one
line on stderr, never a traceback), 3 the target itself raised or crashed.
"""
import argparse
import importlib
import sys

EXIT_CLEAN, EXIT_FOUND, EXIT_USAGE, EXIT_TARGET = 0, 1, 2, 3

COMMANDS = ["check", "demo", "doctor", "build-python", "run", "valgrind"]


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text)
    if value < 1:
        raise argparse.ArgumentTypeError("%r must be at least 1" % text)
    return value


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text)
    if value < 0:
        raise argparse.ArgumentTypeError("%r must be 0 or more" % text)
    return value


def fail_usage(message):
    """Print the one-line usage error and return exit status 2."""
    sys.stderr.write("refhound: error: %s\n" % message)
    return EXIT_USAGE


def build_parser():
    p = _Parser(prog="refhound",
                description="Find memory leaks, reference leaks and refcount errors "
                            "in CPython C extensions.")
    from . import __version__
    p.add_argument("--version", action="version", version="refhound " + __version__)
    p.add_argument("--include", action="store_true",
                   help="print the directory holding <refhound/refhound.h> (for -I) and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = {}
    for name in COMMANDS:
        mod = importlib.import_module("refhound.commands." + name.replace("-", "_"))
        mod.add_parser(sub)
        modules[name] = mod
    return p, modules


def main(argv=None):
    parser, modules = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return fail_usage(exc)
    if args.include:
        from ._include import get_include
        print(get_include())
        return EXIT_CLEAN
    if args.command is None:
        return fail_usage("no command given (try: refhound check MODULE:CALLABLE, "
                          "refhound demo, refhound --help)")
    return modules[args.command].run(args)
