"""The HTML report: how big it is and how long Chromium takes to open it.

Synthetic results in the real schema (tests/html_samples.py: a leak with
its site, 30 types, every sample key) of 100, 1,000 and 10,000 measured
iterations are rendered by refhound.report.html, then opened in headless
Chromium, fresh processes, interleaved, medians over --runs:

    render     Python: html.render() of the parsed JSON (machine facts left out)
    size       bytes of the HTML file (the budget: 2 MB at 10,000 iterations)
    open       in the page: performance.now() when the document is parsed,
               its script has run and a forced layout is done, measured by
               a probe appended to a copy of the report (navigation start = 0;
               the same probe in an empty page is printed for the floor)
    wall       chromium --headless --dump-dom of the report, spawn to exit,
               minus the same for an empty page (browser start-up cancels out)

    python3 bench/html_report.py [--runs 5] [--iterations 100 1000 10000]

Prints a table; writes bench/results/html_report.json.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, os.path.join(ROOT, "src"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)
import html_samples  # noqa: E402
from engine import machine_info  # noqa: E402
from refhound.report import html  # noqa: E402

PROBE = ("<script>document.body.offsetHeight;document.documentElement.setAttribute("
         "'data-bench-ms',String(performance.now()));</script>")


def chromium(path, profile):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    t = time.perf_counter()
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--user-data-dir=" + profile, "--dump-dom", "file://" + path],
                          capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or "</html>" not in proc.stdout:
        raise RuntimeError("chromium failed on %s: %s" % (path, proc.stderr[-500:]))
    return wall, proc.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--iterations", type=int, nargs="+", default=[100, 1000, 10000])
    args = ap.parse_args()
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        sys.exit("chromium is not installed (apt-get install chromium)")
    work = tempfile.mkdtemp(prefix="refhound-bench-html-")
    profile = os.path.join(work, "profile")
    try:
        pages, rows = {}, {}
        empty = os.path.join(work, "empty.html")
        with open(empty, "w") as fh:
            fh.write("<!DOCTYPE html><html><body>" + PROBE + "</body></html>")
        empty_open = []
        for n in args.iterations:
            result = json.loads(json.dumps(html_samples.result(iterations=n)))
            renders = []
            for _ in range(args.runs):
                t = time.perf_counter()
                text = html.render(result, None)
                renders.append(time.perf_counter() - t)
            page = os.path.join(work, "report-%d.html" % n)
            with open(page, "w") as fh:
                fh.write(text)
            probed = os.path.join(work, "probed-%d.html" % n)
            with open(probed, "w") as fh:
                fh.write(text.replace("</body>", PROBE + "</body>"))
            pages[n] = (page, probed)
            rows[n] = {"iterations": n, "json_bytes": len(json.dumps(result)),
                       "html_bytes": len(text.encode()),
                       "render_s": statistics.median(renders), "open_ms": [], "wall_s": [],
                       "empty_wall_s": []}
        for _ in range(args.runs):              # interleaved: the sizes share any noise
            for n in args.iterations:
                page, probed = pages[n]
                wall, dom = chromium(page, profile)
                if "data-rh-error" in dom.split(">", 2)[1] or 'data-rh-ready="6"' not in dom:
                    raise RuntimeError("the report of %d iterations did not load cleanly" % n)
                empty_wall, dom = chromium(empty, profile)
                empty_open.append(float(re.search(r'data-bench-ms="([\d.]+)"', dom).group(1)))
                _, dom = chromium(probed, profile)
                rows[n]["open_ms"].append(float(re.search(r'data-bench-ms="([\d.]+)"',
                                                          dom).group(1)))
                rows[n]["wall_s"].append(wall)
                rows[n]["empty_wall_s"].append(empty_wall)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = []
    empty_ms = statistics.median(empty_open)
    print("empty page: open %.1f ms" % empty_ms)
    print("%10s %12s %12s %10s %10s %12s" % ("iterations", "JSON bytes", "HTML bytes",
                                             "render ms", "open ms", "wall-empty ms"))
    for n in args.iterations:
        r = rows[n]
        r["open_ms_median"] = statistics.median(r["open_ms"])
        r["wall_minus_empty_ms_median"] = 1000 * (statistics.median(r["wall_s"]) -
                                                  statistics.median(r["empty_wall_s"]))
        print("%10d %12d %12d %10.1f %10.1f %12.0f" % (
            n, r["json_bytes"], r["html_bytes"], 1000 * r["render_s"], r["open_ms_median"],
            r["wall_minus_empty_ms_median"]))
        out.append(r)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "html_report.json"), "w") as fh:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                   "machine": machine_info(), "runs": args.runs,
                   "empty_page_open_ms_median": empty_ms, "rows": out}, fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":
    main()
