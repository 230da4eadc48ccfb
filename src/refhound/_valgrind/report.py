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


# What a memcheck run cannot see, said once at the end of every report.
CANNOT_SEE = [
    "a reference leak on an object that lives on anyway (an extra Py_INCREF on None, a "
    "type, an interned string, a cached object): no memory is lost",
    "objects kept reachable from a live container (a list, dict or cache that grows): "
    "memcheck counts them as referenced, not lost",
    "a use after free of an object that went back to one of CPython's free lists "
    "(tuples, floats, lists, dicts): the interpreter keeps its memory, memcheck never "
    "sees it freed",
    "leaks found only at exit: the GC's lists still link every container then (refhound "
    "hides those links only in its own searches, per test and per checked call)",
]
CANNOT_SEE_TOOLS = "`pytest --refhound` and `refhound check` count references and objects " \
                   "and find these"


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
        "noise": analysis.noise,
        "set_aside": analysis.set_aside,
        "user_objects": sorted(analysis.user_objects),
        "suppressions": run["suppressions"],
        "processes": analysis.processes,
        "xml_dir": run.get("xml_dir"),
        "cannot_see": list(CANNOT_SEE),
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
                times = " x%s" % _n(f["count"]) if f.get("count", 1) > 1 else ""
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
                reused = f.get("reused") or {}
                rate = ""
                if f.get("per_call"):
                    per = dict(f["per_call"])
                    rp = reused.get("per_call") or {}
                    rate = ": %.3g blocks, %.3g bytes per call" % (
                        per["blocks"] + rp.get("blocks", 0), per["bytes"] + rp.get("bytes", 0))
                else:
                    rate = ": %s blocks, %s bytes" % (f["blocks"] + reused.get("blocks", 0),
                                                      f["bytes"] + reused.get("bytes", 0))
                lines.append("  %s %s in %s, %s%s%s" % (
                    red("leak") if f["category"] == "leak" else "growth",
                    _where(c, root), c["function"], cls, rate, scope))
                if reused:
                    lines.append("      %s allocated here; %s more %s%s taken from CPython's free "
                                 "list keep the allocation stack of their first life" % (
                                     _n(f["blocks"]), _n(reused["blocks"]), reused["type"],
                                     "" if reused["type"].endswith("s") else "s"))
    if data["one_time"]:
        lines.append("")
        lines.append("one-time allocations in checked calls (not leaks): %d" % len(data["one_time"]))
    lines += _scopes_lines(data)
    lines += _noise_lines(data, root)
    for note in data.get("notes", []):
        lines.append("note: " + note)
    if not (errors or leaks or growth):
        lines.append("no memory errors or leaks in your code.")
    lines += _cannot_see_lines(data)
    return "\n".join(lines) + "\n"


def _n(x):
    return format(int(x or 0), ",")


def _plural(n, word, plural=None):
    return "%s %s" % (_n(n), word if n == 1 else (plural or word + "s"))


def _scopes_lines(data):
    """One line per test (or checked call) with findings in the user's
    code: the counts are the user's, never memcheck's own."""
    scopes = [s for s in data.get("scopes") or [] if isinstance(s, dict)]
    if not scopes:
        return []
    named = {}
    for s in scopes:
        named.setdefault(s.get("name"), s)
    busy = [s for s in named.values() if s.get("errors") or s.get("leaks")]
    kinds = {s.get("kind") for s in named.values()}
    what = "tests" if kinds == {"test"} else "checked calls" if kinds == {"call"} \
        else "tests and checked calls"
    out = ["", "%s (%d): %s" % (what, len(named),
                                "%d with errors or leaks in your code" % len(busy) if busy
                                else "no errors or leaks in your code")]
    for s in busy:
        parts = []
        if s.get("errors"):
            times = s.get("error_occurrences") or 0
            parts.append("%s in your code%s" % (_plural(s["errors"], "error"),
                                                " (x%s)" % _n(times) if times > s["errors"]
                                                else ""))
        if s.get("leaks"):
            parts.append(_plural(s["leaks"], "leak"))
        out.append("  %s: %s" % (s.get("name"), ", ".join(parts)))
    return out


def _short_lines(items, root):
    """"file.c:12, 40; other.c:7" from culprits."""
    by_file = {}
    for f in items:
        c = f["culprit"]
        path = _where({"file": c.get("file"), "object": c.get("object")}, root)
        by_file.setdefault(path, set()).add(c.get("line"))
    return "; ".join("%s:%s" % (path, ", ".join(str(x) for x in sorted(v for v in lines if v)))
                     if any(lines) else path
                     for path, lines in sorted(by_file.items()))


def _noise_lines(data, root):
    """Everything left out, once: where it came from and why."""
    noise = data.get("noise") or {}
    sup = data.get("suppressions") or {}
    set_aside = data.get("set_aside") or []
    groups = noise.get("errors") or []
    records = noise.get("leak_records") or []
    n_err = sum(g["distinct"] for g in groups) + len(set_aside)
    n_occ = sum(g["occurrences"] for g in groups) + sum(f.get("count", 1) for f in set_aside)
    n_rec = sum(g["records"] for g in records)
    out = [""]
    mine = data.get("user_objects")
    if mine:
        out.append("your code in memcheck's records: %s%s" % (
            ", ".join(mine[:4]), " and %d more" % (len(mine) - 4) if len(mine) > 4 else ""))
    elif mine is not None and (n_err or n_rec):
        out.append("your code in memcheck's records: none (yours is everything but the "
                   "interpreter, system libraries, Valgrind and refhound; --user GLOB names it)")
    if n_err or n_rec:
        out.append("noise, left out of the verdict: %s (x%s), %s" % (
            _plural(n_err, "error"), _n(n_occ), _plural(n_rec, "loss record")))
    else:
        out.append("noise: none left out")
    hints = noise.get("hints") or {}
    shown = 0
    for g in groups:
        if shown == 6:
            rest = groups[6:]
            out.append("  and %s more (x%s) elsewhere" % (
                _plural(sum(x["distinct"] for x in rest), "error"),
                _n(sum(x["occurrences"] for x in rest))))
            break
        shown += 1
        fns = ", ".join(g.get("functions") or [])
        head = "  %s x%s in %s" % (_plural(g["distinct"], "error"), _n(g["occurrences"]),
                                   g.get("object") or "?")
        if fns:
            head += " (%s)" % fns
        if g.get("hint"):
            head += ": " + hints.get(g["hint"], g["hint"])
        out.append(head)
        if g.get("in_your_code"):
            out.append("      %s of them in your code's stack, their values made by the "
                       "interpreter (memcheck's origins say so)" % _n(g["in_your_code"]))
        if g.get("hint") == "small-int" and set_aside:
            out += _set_aside_lines(set_aside, root)
            set_aside = []
    if set_aside:
        out.append("  uninitialised object pointers in your code's stack: "
                   + hints.get("small-int", "CPython's small-int zero"))
        out += _set_aside_lines(set_aside, root)
    for g in records:
        where = "%s in %s" % (g.get("function") or "?", g.get("object") or "?")
        if g.get("reused"):
            out.append("  %s from %s: objects reused from CPython's free list, added to the "
                       "leak of the same type in your code above" % (
                           _plural(g["records"], "loss record"), where))
        else:
            out.append("  %s from %s" % (_plural(g["records"], "loss record"), where))
    if sup.get("count") or sup.get("files"):
        used = noise.get("suppressions_used") or {}
        parts = []
        if sup.get("count") or sup.get("baseline"):
            parts.append("%s generated for this interpreter%s" % (
                _n(sup.get("count", 0)), " now" if sup.get("generated") else " (cached)"))
        extra = len(sup.get("files") or []) - (1 if sup.get("baseline") else 0)
        if extra > 0:
            parts.append("%s of yours" % _plural(extra, "file"))
        line = "  suppressions: " + ", ".join(parts)
        if used:
            line += "; %s matched %s times" % (_plural(len(used), "kind"),
                                               _n(sum(used.values())))
        else:
            line += "; none matched"
        out.append(line)
    elif sup:
        out.append("  suppressions: none")
    return out


def _set_aside_lines(items, root):
    n = sum(f.get("count", 1) for f in items)
    return ["      %s x%s in your code's stack look the same (%s): not counted as "
            "yours; run with --track-origins to tell for sure" % (
                _plural(len(items), "report"), _n(n), _short_lines(items, root))]


def _cannot_see_lines(data):
    items = data.get("cannot_see") or []
    if not items:
        return []
    out = ["", "what memcheck cannot see (%s):" % CANNOT_SEE_TOOLS]
    out += ["  - " + x for x in items]
    return out


def to_json(data):
    return json.dumps(data, indent=2)
