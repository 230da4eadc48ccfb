"""refhound demo — check the bundled example extension and show the reports."""
from ..cli import EXIT_CLEAN


def add_parser(sub):
    d = sub.add_parser("demo", help="check the bundled example extension refhound._demo")
    d.add_argument("--no-progress", action="store_true", help="no live progress line")


def run(args):
    from .._child import run_in_child
    return run_in_child(lambda: _demo(args), what="the demo")


def _demo(args):
    from .. import _child, _core
    from ..api import Checker
    from ..options import Options
    from ..report.terminal import ProgressLine, render_for

    _core.start()
    from .. import _demo as demo

    out = _child.stdout()
    options = Options()
    progress = ProgressLine(stream=_child.stderr(), enabled=False if args.no_progress else None,
                            options=options)
    checker = Checker(progress=progress, **options.to_dict())
    out.write("refhound demo: checking three functions of the bundled extension "
              "refhound._demo\n\n")
    for name in ("parse_items", "tag_none", "checksum"):
        result = checker.run(getattr(demo, name), (), {}, "refhound._demo:" + name)
        progress.clear()
        out.write(render_for(result, out) + "\n")
    return EXIT_CLEAN
