"""The `refhound` command: parse the command line, dispatch to a command.

Each command lives in refhound/commands/<name>.py with two functions:
`add_parser(subparsers)` and `run(args) -> exit status`.  Add its name to
COMMANDS to register it.

Exit status: 0 clean, 1 leak or error found, 2 bad usage or input (one
line on stderr, never a traceback), 3 the target itself failed: it raised,
crashed, ended the process, or ran past --timeout.
"""
import argparse
import importlib

EXIT_CLEAN, EXIT_FOUND, EXIT_USAGE, EXIT_TARGET = 0, 1, 2, 3

COMMANDS = ["check", "demo", "doctor", "build-python", "run", "valgrind", "report"]


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


# Whole-number arguments of the commands other than the check's options
# (those are bounded in options.py): out of range is a usage error.
MAX_WHOLE = 1 << 40


def whole_number(minimum, maximum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a whole number" % text)
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError("%r must be between %d and %d"
                                             % (text, minimum, maximum))
        return value
    return parse


positive_int = whole_number(1, 1000)


def write_json(dest, text):
    """Write a command's JSON to `dest` ('-' = stdout).  Returns the stream
    the human report should go to (stderr when stdout carries the JSON),
    or None when the file cannot be written (the error is printed, exit 2)."""
    from ._child import stderr, stdout
    if dest == "-":
        stdout().write(text + "\n")
        return stderr()
    try:
        with open(dest, "w") as f:
            f.write(text + "\n")
    except OSError as exc:
        fail_usage("cannot write %s: %s" % (dest, exc.strerror or exc))
        return None
    return stdout()


def fail_usage(message):
    """Print the one-line usage error and return exit status 2."""
    from ._child import stderr
    stderr().write("refhound: error: %s\n" % message)
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
