"""refhound report RESULT.json --html FILE — render a saved result as one
self-contained HTML file (refhound check --json, refhound run --json,
pytest --refhound-json, refhound valgrind --json)."""
from ..cli import EXIT_CLEAN, EXIT_USAGE, fail_usage


def add_parser(sub):
    r = sub.add_parser("report", help="render a saved JSON result as an HTML report",
                       description="Render the JSON written by refhound check, refhound run, "
                                   "refhound valgrind or pytest --refhound-json as one "
                                   "self-contained HTML file (nothing loaded from the network).")
    r.add_argument("result", metavar="RESULT.json", help="the saved result")
    r.add_argument("--html", metavar="FILE", required=True, help="the HTML file to write")
    r.add_argument("--no-machine", action="store_true",
                   help="leave out the facts of this machine (refhound doctor)")


def run(args):
    from ..report import html
    try:
        data = html.load(args.result)
        text = html.render(data, None if args.no_machine else html.machine_facts(),
                           source_name=args.result)
    except html.BadInput as exc:
        return fail_usage(exc)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        return fail_usage("%s is not a valid refhound result (%s: %s)"
                          % (args.result, type(exc).__name__, exc))
    try:
        with open(args.html, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        return fail_usage("cannot write %s: %s" % (args.html, exc.strerror or exc))
    return EXIT_CLEAN
