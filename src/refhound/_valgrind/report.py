"""The summary of a `refhound valgrind` run: terminal text and JSON."""
import json
import os

from .classify import public

LABELS = {
    "use-after-free": "use after free",
    "overflow": "heap overflow",
    "underflow": "heap underflow",
    "double-free": "double free",
    "invalid-free": "invalid free",
    "mismatched-free": "mismatched free",
    "invalid-read": "invalid read",
    "invalid-write": "invalid write",
    "uninitialised": "use of uninitialised memory",
}

SITE_NAMES = {"access": "accessed", "free": "freed", "alloc": "allocated",
              "origin": "uninitialised value created"}

CLASSES = {
    "per-call": "growing with the calls",
    "lost-in-scope": "lost",
    "grew-in-scope": "still referenced, grew",
    "lost-at-exit": "lost at exit",
}


def to_dict(run, analysis):
    findings = public(analysis.findings)
    return {
        "tool": "memcheck",
        "command": run["command"],
        "allocator": run["allocator"],
        "exit_status": run["exit_status"],
        "seconds": round(run["seconds"], 2),
        "verdict": "error" if any(f["category"] == "error" for f in findings)
                   else "leak" if any(f["category"] == "leak" for f in findings)
                   else "clean",
        "errors": [f for f in findings if f["category"] == "error"],
        "leaks": [f for f in findings if f["category"] == "leak"],
        "growth": [f for f in findings if f["category"] == "growth"],
        "one_time": analysis.one_time,
        "scopes": analysis.scopes,
        "filtered": analysis.stats,
        "suppressions": run["suppressions"],
        "processes": analysis.processes,
        "xml_dir": run.get("xml_dir"),
        "notes": run.get("notes", []),
    }


def _where(c, root=None):
    path = c.get("file")
    if path and root:
        try:
            rel = os.path.relpath(path, root)
            if not rel.startswith(".."):
                path = rel
        except ValueError:
            pass
    if path and c.get("line"):
        return "%s:%s" % (path, c["line"])
    return path or c.get("object") or "?"


def render(data, color=False, root=None):
    def bold(s):
        return "\033[1m%s\033[0m" % s if color else s

    def red(s):
        return "\033[31m%s\033[0m" % s if color else s

    lines = []
    errors, leaks, growth = data["errors"], data["leaks"], data["growth"]
    head = "refhound valgrind: %s  (%s allocator, %.1f s, exit status %s)" % (
        data["verdict"].upper(), data["allocator"], data["seconds"], data["exit_status"])
    lines.append(bold(head))
    for title, items in (("memory errors", errors), ("leaks", leaks),
                         ("growth (still referenced)", growth)):
        if not items:
            continue
        lines.append("")
        lines.append(bold("%s (%d)" % (title, len(items))))
        for f in items:
            c = f["culprit"]
            scope = "  [%s]" % f["scope"] if f.get("scope") else ""
            if f["category"] == "error":
                label = LABELS.get(f["kind"], f["kind"])
                role = "" if c["role"] == "access" else " (%s site)" % c["role"]
                times = " x%d" % f["count"] if f.get("count", 1) > 1 else ""
                lines.append("  %s %s in %s%s%s%s" % (red(label), _where(c, root), c["function"],
                                                     role, times, scope))
                lines.append("      %s" % f["what"])
                sites = f.get("sites", {})
                for role in ("access", "free", "alloc", "origin"):
                    if role in sites and role != c["role"]:
                        s = sites[role]
                        lines.append("      %s at %s in %s" % (SITE_NAMES[role],
                                                             _where(s, root), s["function"]))
            else:
                cls = CLASSES.get(f.get("class"), f.get("class"))
                rate = ""
                if f.get("per_call"):
                    rate = ": %.3g blocks, %.3g bytes per call" % (
                        f["per_call"]["blocks"], f["per_call"]["bytes"])
                else:
                    rate = ": %s blocks, %s bytes" % (f["blocks"], f["bytes"])
                lines.append("  %s %s in %s, %s%s%s" % (
                    red("leak") if f["category"] == "leak" else "growth",
                    _where(c, root), c["function"], cls, rate, scope))
    if data["one_time"]:
        lines.append("")
        lines.append("one-time allocations in checked calls (not leaks): %d" % len(data["one_time"]))
    st = data["filtered"]
    lines.append("")
    sup = data["suppressions"]
    lines.append("noise: %d of %d errors and %d of %d loss records had no frame in your code; "
                 "%s suppressions%s" % (
                     st["errors_filtered"], st["errors_seen"], st["leak_records_filtered"],
                     st["leak_records_seen"], sup.get("count", 0),
                     " (generated now)" if sup.get("generated") else ""))
    for note in data.get("notes", []):
        lines.append("note: " + note)
    if not (errors or leaks or growth):
        lines.append("no memory errors or leaks in your code.")
    return "\n".join(lines) + "\n"


def to_json(data):
    return json.dumps(data, indent=2)
