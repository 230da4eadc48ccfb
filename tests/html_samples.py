"""Results in the real JSON schema, made up, for the HTML report's tests and
bench/html_report.py: any number of iterations, a leak with its sites, and
a result whose every string is hostile markup."""
import math
import random

HOSTILE = '</script><img src=x onerror="document.title=\'pwned\'">&amp;<!--'

SAMPLE_KEYS = ("refs", "objects", "gc_objects", "blocks", "bytes", "raw_blocks", "mem_blocks",
               "obj_blocks", "raw_bytes", "mem_bytes", "obj_bytes", "native_bytes", "rss_bytes",
               "uss_bytes", "fds", "threads", "debug_refs", "arenas", "pools", "pymalloc_blocks")


def _frames(file, line):
    """An allocation stack as the engine reports it, innermost first."""
    lib = "/usr/lib/libpython3.11.so.1.0"
    return [
        {"function": "gc_alloc", "file": "Modules/gcmodule.c", "line": 2283, "module": lib,
         "inlined": True},
        {"function": "_PyObject_GC_New", "file": "Modules/gcmodule.c", "line": 2298,
         "module": lib, "inlined": False},
        {"function": "PyList_New", "file": "Objects/listobject.c", "line": 179, "module": lib,
         "inlined": False},
        {"function": "leaky", "file": file, "line": line, "module": "/ext/mod.so",
         "inlined": False},
        {"function": "cfunction_vectorcall_NOARGS", "file": "Objects/methodobject.c",
         "line": 486, "module": lib, "inlined": False},
    ] + [{"function": "_PyEval_EvalFrameDefault", "file": "Python/ceval.c", "line": 5000 + k,
          "module": lib, "inlined": False} for k in range(11)]


def result(iterations=60, warmup=3, calls=1000, seed=1, leak_per_call=5.0):
    """A `Result.to_dict()` of a leak measured over `iterations` iterations."""
    rnd = random.Random(seed)
    n = warmup + iterations
    samples = []
    for i in range(n):
        k = max(i - warmup + 1, 0) * calls
        s = {"t": round(0.005 * (i + 1), 6), "epoch": i + 1}
        for key in SAMPLE_KEYS:
            s[key] = 1000 + i
        s.update(refs=8_000_000 + int(leak_per_call * 0.8 * k) + rnd.randint(-3, 3),
                 objects=40_000 + int(leak_per_call * 0.8 * k),
                 blocks=5000 + int(leak_per_call * k) + (rnd.randint(0, 50) if i % 97 == 5 else 0),
                 bytes=180_000 + int(leak_per_call * 35 * k),
                 native_bytes=2_900_000 + (4096 if i >= warmup + 2 else 0),
                 rss_bytes=20_000_000 + 4096 * int(math.sqrt(i + 1)) + 4096 * rnd.randint(0, 3),
                 fds=3, debug_refs=-1)
        samples.append(s)
    file = "/src/ext/mod.c"
    per_call = {"refs": leak_per_call * 0.8, "objects": leak_per_call * 0.8,
                "blocks": leak_per_call, "bytes": leak_per_call * 35, "native_bytes": 0.0,
                "rss_bytes": 0.0, "fds": 0.0}
    trend = {"trend": "growing", "slope": 1.0, "p_up": 1e-6, "p_down": 0.999999, "window": n}
    flat = {"trend": "flat", "slope": 0.0, "p_up": 1.0, "p_down": 1.0, "window": n}
    source = [[36, "leaky(PyObject *self, PyObject *unused)", False], [37, "{", False],
              [38, "    PyObject *list = PyList_New(NITEMS);", True],
              [39, "    if (list == NULL) {", False], [40, "        return NULL;", False]]
    site = {"address": 140186322150183, "function": "leaky", "file": file, "line": 38,
            "module": "/ext/mod.so", "python": [{"file": "/src/tests/test_mod.py", "line": 12,
                                                 "function": "test_leaky"}],
            "frames": _frames(file, 38), "source": source,
            "blocks_per_call": leak_per_call, "bytes_per_call": leak_per_call * 35,
            "root_blocks_per_call": 1.0,
            "history_events": [
                {"delta": None, "refcnt": 1, "file": file, "line": 38, "function": "leaky",
                 "api": "PyList_New"},
                {"delta": 1, "refcnt": 2, "file": file, "line": 41, "function": "leaky",
                 "api": "PyList_Append"},
                {"delta": -1, "refcnt": 1, "file": file, "line": 44, "function": "leaky",
                 "api": "Py_DECREF"}],
            "history": ["created at mod.c:38 (PyList_New); +1 at mod.c:41 (PyList_Append); "
                        "-1 at mod.c:44 (Py_DECREF); never released (refcount 1 when the call "
                        "returned)"]}
    measured_epochs = iterations
    survivors = [int(leak_per_call * calls)] * measured_epochs + [10_005] * 4 + [5000] * 5
    return {
        "target": "mod:leaky", "verdict": "leak",
        "iterations": {"warmup": warmup, "measured": iterations},
        "calls_per_iteration": calls, "seconds": round(0.005 * n, 4),
        "per_call": per_call,
        "objects": [{"type": "int", "count_per_call": leak_per_call * 0.6},
                    {"type": "list", "count_per_call": leak_per_call * 0.2}],
        "refcount_growth": [],
        "sites": [site],
        "types": [{"type": "type%d" % t, "allocs": 10_000 - t, "frees": 9000 - t,
                   "max_live": 2000, "live": 1000} for t in range(30)],
        "trends": {k: (trend if k in ("refs", "objects", "blocks", "bytes") else flat)
                   for k in SAMPLE_KEYS},
        "survivors": {"first_epoch": warmup + 1, "blocks": survivors,
                      "bytes": [b * 35 for b in survivors]},
        "samples": samples,
        "notes": [],
        "incomplete": None,
        "tracker": {"table_bytes": 4675072, "table_entries": 165930, "failure": None},
    }


def hostile_result():
    """A leak whose every string field (target, type names, reprs, paths,
    functions, source text, notes) is markup trying to run."""
    r = result(iterations=12)
    r["target"] = "mod:" + HOSTILE
    r["notes"] = ["note " + HOSTILE]
    r["incomplete"] = None
    r["objects"] = [{"type": HOSTILE, "count_per_call": 1.0}]
    r["types"][0]["type"] = HOSTILE
    site = r["sites"][0]
    site["file"] = "/src/" + HOSTILE + ".c"
    site["function"] = HOSTILE
    site["module"] = HOSTILE + ".so"
    site["source"][2][1] = "    x = " + HOSTILE
    site["history"] = [HOSTILE]
    site["history_events"][0]["api"] = HOSTILE
    site["python"][0]["function"] = HOSTILE
    site["frames"][3]["function"] = HOSTILE
    site["frames"][3]["file"] = site["file"]
    r["refcount_growth"] = [{"type": HOSTILE, "repr": HOSTILE, "refs_per_call": 1.0,
                             "sites": [dict(site, refs_per_call=1.0, blocks_per_call=None)]}]
    r["memory_errors"] = [{"kind": HOSTILE, "type": HOSTILE,
                           "culprit": {"file": site["file"], "line": 38, "function": HOSTILE},
                           "access": [{"function": HOSTILE, "file": site["file"], "line": 38}]}]
    return r


def memory_error_result():
    """A result with the `memory_errors` key (use after free, three stacks)."""
    r = result(iterations=10)
    r["verdict"] = "error"
    file = "/src/ext/uaf.c"
    r["memory_errors"] = [{
        "kind": "use-after-free", "type": "bytes",
        "culprit": {"file": file, "line": 33, "function": "leaky", "module": "/ext/uaf.so"},
        "access": [{"function": "leaky", "file": file, "line": 34, "module": "/ext/uaf.so"}],
        "allocated": {"frames": [{"function": "PyBytes_FromStringAndSize",
                                  "file": "Objects/bytesobject.c", "line": 100,
                                  "module": "/usr/lib/libpython3.11.so.1.0"},
                                 {"function": "leaky", "file": file, "line": 28,
                                  "module": "/ext/uaf.so"}]},
        "freed": [{"function": "_Py_Dealloc", "file": "Objects/object.c", "line": 2390,
                   "module": "/usr/lib/libpython3.11.so.1.0"},
                  {"function": "leaky", "file": file, "line": 33, "module": "/ext/uaf.so"}],
    }]
    return r


def valgrind_summary():
    """The JSON of `refhound valgrind --json` (one error, one leak)."""
    file = "/src/ext/double_free.c"
    lib = "/usr/lib/libpython3.11.so.1.0"
    stack = [{"function": "free", "file": None, "line": None,
              "object": "/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so"},
             {"function": "leaky", "file": file, "line": 34, "object": "/ext/double_free.so"},
             {"function": "cfunction_vectorcall_NOARGS", "file": "Objects/methodobject.c",
              "line": 486, "object": lib}]
    culprit = {"function": "leaky", "file": file, "line": 34, "object": "/ext/double_free.so",
               "role": "access"}
    return {
        "tool": "memcheck", "command": ["python3", "driver.py"], "allocator": "malloc",
        "exit_status": 0, "seconds": 7.2, "verdict": "error",
        "errors": [{"category": "error", "kind": "double-free", "memcheck_kind": "InvalidFree",
                    "what": "Invalid free() / delete / delete[] / realloc()",
                    "culprit": culprit,
                    "sites": {"access": culprit,
                              "free": dict(culprit, line=32, role="free"),
                              "alloc": dict(culprit, line=25, role="alloc")},
                    "scope": "double_free:leaky", "scope_kind": "call",
                    "scope_path": ["double_free:leaky"], "count": 6, "pids": [1],
                    "stack": stack,
                    "aux": [{"what": "Address 0x52d93b0 is 0 bytes inside a block of size 48 "
                                     "free'd", "stack": stack}]}],
        "leaks": [{"category": "leak", "kind": "leak", "class": "per-call",
                   "memcheck_kind": "Leak_DefinitelyLost", "leak_kinds": ["definite"],
                   "what": "192 bytes in 6 blocks are definitely lost",
                   "culprit": dict(culprit, line=21, role="alloc"),
                   "scope": "new_object:leaky", "scope_kind": "call",
                   "scope_path": ["new_object:leaky"], "blocks": 4, "bytes": 128, "pids": [1],
                   "stack": stack, "per_call": {"blocks": 1.0, "bytes": 32.0},
                   "iterations": {"measured": 4, "grew": 4, "calls": 4,
                                  "series": [1, 1, 1, 1]}}],
        "growth": [], "one_time": [],
        "scopes": [{"kind": "call", "name": "double_free:leaky", "pid": 1, "errors": 6}],
        "filtered": {"errors_seen": 3, "errors_filtered": 0, "errors_startup": 0,
                     "leak_records_seen": 1, "leak_records_filtered": 0,
                     "at_exit_not_lost": 0},
        "suppressions": {"files": [], "count": 19, "generated": False},
        "processes": [], "xml_dir": None, "notes": [],
    }


def machine():
    """Facts in the shape of `refhound.report.html.machine_facts()`."""
    return {
        "rendered": "2025-01-01 12:00:00", "platform": "Linux-6.1-x86_64-with-glibc2.36",
        "cpus": 2, "refhound": "0.1.0",
        "doctor": {
            "interpreter": {"implementation": "cpython", "python": "3.11.7",
                            "executable": "/usr/bin/python3", "py_debug": False,
                            "py_ref_debug": False, "py_trace_refs": False,
                            "allocator": "pymalloc", "freelists": True,
                            "immortal_objects": False, "free_threading": False},
            "debug_symbols": {"interpreter": {"verdict": "in the file"}, "module": None},
            "frame_pointers": {"interpreter": "no"},
            "libdw": {"library": "libdw.so.1", "headers": True, "engine_uses_it": True},
            "watchpoints": {"allowed": True, "error": None},
            "valgrind": {"present": True, "version": "3.19.0"},
            "engine": {"loaded": True, "path": "/src/refhound/_core.so", "error": None},
            "advice": ["Free lists are on, so a few objects settle in caches."],
        },
    }
