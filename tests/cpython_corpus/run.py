"""Run the CPython corpus: refhound check of every (case, interpreter) and
its culprit against the true line from the interpreter's DWARF.

    python3 tests/cpython_corpus/run.py [CASE ...]     # prints the table
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import cases  # noqa: E402
import support  # noqa: E402
import truth  # noqa: E402


def culprit_of(result):
    """The culprit refhound names first: the top site's, else the top
    refcount site's."""
    for site in result.get("sites") or []:
        if site.get("culprit"):
            return site["culprit"]
    for growth in result.get("refcount_growth") or []:
        for site in growth.get("sites") or []:
            if site.get("culprit"):
                return site["culprit"]
    return None


def run_case(case, tag):
    """{"verdict", "culprit", "found", "true", "exact", "result"} for one case on one
    interpreter (None when the interpreter is not here)."""
    python = cases.INTERPRETERS[tag]
    if not os.path.exists(python):
        return None
    expected = truth.true_lines(cases.INTERPRETERS[cases.TRUTH_FROM.get(tag, tag)],
                                case["function"], case["callees"], case["source"],
                                case.get("which"), case.get("inlined", False))
    status, result, err = support.check_json(python, "leaks:" + case["name"], HERE)
    if result is None:
        return {"verdict": "failed: " + err[-300:], "culprit": None, "found": None,
                "true": sorted(expected), "exact": False}
    culprit = culprit_of(result)
    found = (os.path.basename(culprit["file"]), culprit["line"]) \
        if culprit and culprit.get("file") else None
    return {"verdict": result["verdict"], "culprit": culprit, "found": found,
            "true": sorted(expected), "exact": found in expected, "result": result}


def main(names):
    total = exact = 0
    for case in cases.CASES:
        if names and case["name"] not in names:
            continue
        for tag in case["interpreters"]:
            row = run_case(case, tag)
            if row is None:
                continue
            total += 1
            exact += row["exact"]
            print("%-20s %-12s %-16s %-10s true %-28s found %-26s %s" % (
                case["name"], case["issue"] or "-", tag, row["verdict"],
                ",".join("%s:%s" % x for x in row["true"]), "%s:%s" % row["found"]
                if row["found"] else "-", "exact" if row["exact"] else "WRONG"))
    print("%d of %d exact" % (exact, total))


if __name__ == "__main__":
    main(sys.argv[1:])
