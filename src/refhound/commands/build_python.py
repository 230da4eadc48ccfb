"""refhound build_python (work in progress)."""
from ..cli import fail_usage


def add_parser(sub):
    sub.add_parser("build-python", help="(not ready yet)")


def run(args):
    return fail_usage("not ready yet")
