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

COMMANDS = ["check", "demo", "doctor", "build-python", "run", "valgrind", "report"]


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _whole_number(minimum, wording):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a whole number" % text)
        if value < minimum:
            raise argparse.ArgumentTypeError("%r must be %s" % (text, wording))
        return value
    return parse


positive_int = _whole_number(1, "at least 1")
non_negative_int = _whole_number(0, "0 or more")


def write_json(dest, text):
    """Write a command's JSON to `dest` ('-' = stdout).  Returns the stream
    the human report should go to (stderr when stdout carries the JSON),
    or None when the file cannot be written (the error is printed, exit 2)."""
    if dest == "-":
        sys.stdout.write(text + "\n")
        return sys.stderr
    try:
        with open(dest, "w") as f:
            f.write(text + "\n")
    except OSError as exc:
        fail_usage("cannot write %s: %s" % (dest, exc.strerror or exc))
        return None
    return sys.stdout


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
