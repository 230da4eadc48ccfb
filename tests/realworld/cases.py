"""Real leaks in released C extensions on PyPI, with the release that fixed them.

Plain data, no imports.  Each entry:

name       unique id
package    PyPI name (pip install --no-deps --target DIR package==version)
leaky      release with the leak
fixed      next release in which the documented fix is shipped
reference  URL of the project's changelog entry, issue or pull request
quote      the sentence there that names the leak
setup      code run once, in a fresh module namespace, with the install
           folder first on sys.path
call       expression (or statements) run by a no-argument ``target()``;
           names come from ``setup``
expect     what grows per call of ``target()`` on the leaky release
probe      (optional) expression, evaluated in the setup namespace, naming an
           object whose ``sys.getrefcount`` grows by one per call on the leaky
           release; for leaks that allocate nothing
measured   per-call growth measured on CPython 3.11.7 x86-64 (release build),
           200 warm-up calls, then 2000 calls, gc.collect() before each
           reading; three fresh processes, figures are the median.  Keys:
             objects          len(gc.get_objects())
             blocks           len(tracemalloc.take_snapshot().traces)
                              (tracemalloc started before the warm-up)
             traced_bytes     sum of the traced sizes
             allocated_blocks sys.getallocatedblocks()
             probe_refcount   sys.getrefcount(<probe>)   (only with probe)
             rss_bytes        resident set size (/proc/self/statm); noisy,
                              a few hundred bytes/call even when nothing
                              leaks (simplejson fixed: ~200), do not gate on it
             us_per_call      wall time of one call, microseconds
           See docs/realworld.md for the command.

Notes that matter for a checker:
- Most of these leak objects that the cyclic GC does not track (str, int,
  the multidict hash table, tuples of atoms after untracking), so
  len(gc.get_objects()) stays flat; traced blocks and sys.getallocatedblocks()
  do grow.  Count gc.get_objects() *before* taking a tracemalloc snapshot:
  a live Snapshot's trace tuples are themselves GC-tracked and would make
  every block leak look like an object leak.
- All wheels here are release builds.  Under /usr/bin/python3.11-dbg they
  import (Debian's debug interpreter accepts the non-"d" suffix), but
  sys.gettotalrefcount() drifts for them because the extension's inlined
  Py_INCREF/Py_DECREF do not update _Py_RefTotal (e.g. msgpack 1.2.0, fixed,
  drifts by +5 per call).  sys.getallocatedblocks() is exact there too.
"""

CASES = [
    {
        "name": "multidict-cimultidict-pop-missing-key",
        "package": "multidict",
        "leaky": "6.7.0",
        "fixed": "6.7.1",
        "reference": "https://github.com/aio-libs/multidict/pull/1284",
        "quote": (
            "6.7.1 changelog: \"Fixed slow memory leak caused by identity by "
            "adding Py_DECREF to identity value before leaving md_pop_one on "
            "success\" (PR #1284, \"Fix memory leak caused by identity when "
            "default value is inplace\", fixes #1273)"
        ),
        "setup": "from multidict import CIMultiDict\nd = CIMultiDict(a=1)\n",
        "call": "d.pop('Missing', None)",
        "expect": (
            "blocks~1 (the lower-cased identity string of the missing key is "
            "never released), objects~0"
        ),
        "measured": {
            "leaky": {"objects": -0.006, "blocks": 1.005, "traced_bytes": 56.3,
                      "allocated_blocks": 1.004, "rss_bytes": 335.9,
                      "us_per_call": 2.5},
            "fixed": {"objects": -0.006, "blocks": 0.005, "traced_bytes": 0.3,
                      "allocated_blocks": 0.004, "rss_bytes": 0.0,
                      "us_per_call": 2.6},
        },
    },
    {
        "name": "multidict-pop-missing-key-refcount",
        "package": "multidict",
        "leaky": "6.7.0",
        "fixed": "6.7.1",
        "reference": "https://github.com/aio-libs/multidict/pull/1284",
        "quote": (
            "6.7.1 changelog: \"Fixed slow memory leak caused by identity by "
            "adding Py_DECREF to identity value before leaving md_pop_one on "
            "success\""
        ),
        "setup": (
            "from multidict import MultiDict\n"
            "d = MultiDict(a=1)\n"
            "k = 'missing' + str(1)   # a private, non-interned key\n"
        ),
        "call": "d.pop(k, None)",
        "probe": "k",
        "expect": (
            "refcount of k +1 per call (for a case-sensitive MultiDict the "
            "identity is the key itself, so only its reference leaks); "
            "objects~0, blocks~0"
        ),
        "measured": {
            "leaky": {"objects": -0.006, "blocks": 0.005, "traced_bytes": 0.3,
                      "allocated_blocks": 0.004, "probe_refcount": 1.0,
                      "rss_bytes": 0.0, "us_per_call": 1.9},
            "fixed": {"objects": -0.006, "blocks": 0.005, "traced_bytes": 0.3,
                      "allocated_blocks": 0.004, "probe_refcount": 0.0,
                      "rss_bytes": 0.0, "us_per_call": 1.9},
        },
    },
    {
        "name": "multidict-reinit",
        "package": "multidict",
        "leaky": "6.7.1",
        "fixed": "6.8.0",
        "reference": "https://github.com/aio-libs/multidict/pull/1412",
        "quote": (
            "6.8.0 changelog: \"Fixed a memory leak when MultiDict and "
            "CIMultiDict instances are initialized more than once\" (#1412)"
        ),
        "setup": "from multidict import MultiDict\n",
        "call": "MultiDict(a=1).__init__(b=2)",
        "expect": "blocks~1 (the replaced hash table), objects~0",
        "measured": {
            "leaky": {"objects": -0.007, "blocks": 1.005, "traced_bytes": 192.3,
                      "allocated_blocks": 1.004, "rss_bytes": 466.9,
                      "us_per_call": 3.7},
            "fixed": {"objects": -0.007, "blocks": 0.005, "traced_bytes": 0.3,
                      "allocated_blocks": 0.004, "rss_bytes": 0.0,
                      "us_per_call": 3.6},
        },
    },
    {
        "name": "multidict-cimultidict-delitem",
        "package": "multidict",
        "leaky": "6.6.3",
        # 6.6.4 fixes the documented block leak, but creating a CIMultiDict
        # from keywords still leaks one reference to the CIMultiDict type per
        # instance up to 6.7.1 (refhound's refcount snapshots found it; a
        # plain loop confirms: sys.getrefcount(CIMultiDict) grows by 1000
        # per 1000 instances on 6.6.4 and 6.7.1, by 0 on 6.8.0).  So the
        # first release clean of both is 6.8.0.
        "fixed": "6.8.0",
        "documented_fix": "6.6.4",
        "reference": "https://github.com/aio-libs/multidict/pull/1233",
        "quote": (
            "6.6.4 changelog: \"Fixed MutliDict & CIMultiDict memory leak when "
            "deleting values or clearing them\" (#1233; reported in #1232, "
            "\"Memory leak in CIMultiDict.pop() method?\")"
        ),
        "setup": "from multidict import CIMultiDict\n",
        "call": "d = CIMultiDict(Ab=1)\ndel d['Ab']",
        "expect": "blocks~1, objects~0",
        "measured": {
            "leaky": {"objects": -0.007, "blocks": 1.005, "traced_bytes": 192.3,
                      "allocated_blocks": 1.004, "rss_bytes": 464.9,
                      "us_per_call": 4.2},
            "fixed": {"objects": -0.007, "blocks": 0.005, "traced_bytes": 0.3,
                      "allocated_blocks": 0.004, "rss_bytes": 0.0,
                      "us_per_call": 3.9},
        },
    },
    {
        "name": "ujson-dump-write-failure",
        "package": "ujson",
        "leaky": "5.12.0",
        "fixed": "5.12.1",
        "reference": "https://github.com/ultrajson/ultrajson/security/advisories/GHSA-c38f-wx89-p2xg",
        "quote": (
            "CVE-2026-44660 / GHSA-c38f-wx89-p2xg: \"Prior to 5.12.1, when "
            "ujson.dump() writes to a file-like object and the write operation "
            "raises an exception, the serialized JSON string object is not "
            "decremented, leaking memory.\""
        ),
        "setup": (
            "import ujson\n"
            "class FailingWriter:\n"
            "    def write(self, s):\n"
            "        raise OSError('disk full')\n"
            "f = FailingWriter()\n"
            "obj = {'a': [1, 2, 3], 'b': 'x' * 50}\n"
            "def call():\n"
            "    try:\n"
            "        ujson.dump(obj, f)\n"
            "    except OSError:\n"
            "        pass\n"
        ),
        "call": "call()",
        "expect": "blocks~1 (the serialized str, ~120 bytes), objects~0",
        "measured": {
            "leaky": {"objects": 0.0, "blocks": 1.028, "traced_bytes": 120.5,
                      "allocated_blocks": 1.026, "rss_bytes": 405.5,
                      "us_per_call": 8.9},
            "fixed": {"objects": 0.0, "blocks": 0.007, "traced_bytes": 0.4,
                      "allocated_blocks": 0.007, "rss_bytes": 4.1,
                      "us_per_call": 8.8},
        },
    },
    {
        "name": "ujson-loads-big-int",
        "package": "ujson",
        "leaky": "5.11.0",
        "fixed": "5.12.0",
        "reference": "https://github.com/ultrajson/ultrajson/security/advisories/GHSA-wgvc-ghv9-3pmm",
        "quote": (
            "CVE-2026-32874 / GHSA-wgvc-ghv9-3pmm: \"Versions 5.4.0 through "
            "5.11.0 contain an accumulating memory leak in JSON parsing large "
            "(outside of the range [-2^63, 2^64 - 1]) integers.\" Fixed in 5.12.0."
        ),
        "setup": "import ujson\n",
        "call": "ujson.loads('18446744073709551616')",
        "expect": (
            "blocks~1 of 21 bytes (a copy of the 20 digits plus NUL, "
            "allocated through Python's allocator, so tracemalloc and "
            "sys.getallocatedblocks() see it), objects~0"
        ),
        "measured": {
            "leaky": {"objects": 0.0, "blocks": 1.005, "traced_bytes": 21.3,
                      "allocated_blocks": 1.005, "rss_bytes": 311.3,
                      "us_per_call": 4.4},
            "fixed": {"objects": 0.0, "blocks": 0.005, "traced_bytes": 0.3,
                      "allocated_blocks": 0.005, "rss_bytes": 0.0,
                      "us_per_call": 4.4},
        },
    },
    {
        "name": "simplejson-skipkeys-sort-keys",
        "package": "simplejson",
        "leaky": "3.20.2",
        "fixed": "4.0.0",
        "reference": "https://github.com/simplejson/simplejson/issues/352",
        "quote": (
            "Issue #352: \"skipkeys item leak\": \"When kstr == Py_None "
            "(skipkeys mode), Py_DECREF(kstr) then continue — but item from "
            "PyIter_Next is never decref'd.\" 4.0.0 CHANGES.txt: \"Fix reference "
            "leaks in dict encoder (skipkeys item, variable shadowing)\""
        ),
        "setup": "import simplejson\nobj = {(1, 2): [], 'a': 2}\n",
        "call": "simplejson.dumps(obj, skipkeys=True, sort_keys=True)",
        "expect": (
            "objects~1 and blocks>=1 (the skipped (key, value) item tuple; it "
            "stays GC-tracked because the value is a list)"
        ),
        "measured": {
            "leaky": {"objects": 1.0, "blocks": 1.315, "traced_bytes": 73.1,
                      "allocated_blocks": 1.311, "rss_bytes": 553.0,
                      "us_per_call": 57.1},
            "fixed": {"objects": -0.002, "blocks": 0.005, "traced_bytes": 0.3,
                      "allocated_blocks": 0.005, "rss_bytes": 208.9,
                      "us_per_call": 49.5},
        },
    },
    {
        "name": "msgpack-unpackb-invalid-nested",
        "package": "msgpack",
        "leaky": "1.1.2",
        "fixed": "1.2.0",
        "reference": "https://github.com/msgpack/msgpack-python/pull/671",
        "quote": (
            "PR #671 \"fix: avoid memory leak when decoding invalid nested "
            "arrays\"; 1.2.0 changelog: \"Fix memory leak when Unpacker returns "
            "error for invalid input. #671\""
        ),
        "setup": (
            "import msgpack\n"
            "data = b'\\x91\\x92\\x01\\xc1'   # [[1, <reserved byte 0xc1>]]\n"
            "def call():\n"
            "    try:\n"
            "        msgpack.unpackb(data)\n"
            "    except ValueError:   # msgpack.FormatError\n"
            "        pass\n"
        ),
        "call": "call()",
        "expect": "objects~1 (the inner list), blocks~2 (list + its item array)",
        "measured": {
            "leaky": {"objects": 1.0, "blocks": 2.006, "traced_bytes": 72.3,
                      "allocated_blocks": 2.005, "rss_bytes": 567.3,
                      "us_per_call": 5.7},
            "fixed": {"objects": 0.0, "blocks": 0.005, "traced_bytes": 0.3,
                      "allocated_blocks": 0.004, "rss_bytes": 0.0,
                      "us_per_call": 7.9},
        },
    },
]
