"""Native tracking: malloc & co., strdup and C++ new/delete inside extensions.

The zoo's native cases (tests/zoo/native_*) at their true rates and lines;
the engine under what the host process can do to it — tracking started
mid-run, threads without the GIL allocating while tracking starts and
stops, fork(), libraries dlopen'ed after the start (by full path, and by a
bare name found on the caller's RUNPATH), numpy; memory mapped outside
malloc reported as RSS growth with its reason; a sub-byte native drift
that pytest does not blame on a test; the preload library of
`refhound run --preload`.

The helper module and library are tests/native_cases/native_helpers.c and
native_side.c, built for the interpreter under test.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from support import BUILD, ROOT, SANITIZE, asan_resident_memory_only, build_zoo_case, cbuild, \
    check_json, close_to, engine_path, interpreter, run_refhound

CASES = [c for c in cbuild.zoo_cases() if c["kind"] == "native"]
NATIVE_CASES = os.path.join(ROOT, "tests", "native_cases")
PY = sys.executable


def helpers_dir():
    """native_helpers (RUNPATH $ORIGIN/side) and side/libnative_side.so."""
    out = os.path.join(BUILD, "native_cases")
    side = os.path.join(out, "side")
    os.makedirs(side, exist_ok=True)
    lib = os.path.join(side, "libnative_side.so")
    src = os.path.join(NATIVE_CASES, "native_side.c")
    if not os.path.exists(lib) or os.stat(lib).st_mtime_ns < os.stat(src).st_mtime_ns:
        tmp = lib + ".%d.tmp" % os.getpid()
        subprocess.run(["cc", "-g", "-O0", "-fPIC", "-shared", src, "-o", tmp], check=True)
        os.replace(tmp, lib)
    cbuild.build_extension(os.path.join(NATIVE_CASES, "native_helpers.c"), out, python=PY,
                           extra_cflags=["-Wl,-rpath,$ORIGIN/side", "-Wl,--enable-new-dtags",
                                         "-ldl"])
    return out


def case(name):
    return next(c for c in CASES if c["name"] == name)


def run(code, timeout=300):
    """`code` in a fresh interpreter with the engine, the helpers and the
    zoo's native cases importable; the last line of its output as JSON."""
    zoo = build_all_cases()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([engine_path(PY), helpers_dir(), zoo]))
    proc = subprocess.run([PY, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build_all_cases():
    out = None
    for c in CASES:
        out = build_zoo_case(c, PY)
    return out


def allocation_line(c):
    """The line of a zoo case's leaked allocation: marked @allocation when
    it is inside an allocation wrapper, else the culprit's."""
    with open(c["path"]) as f:
        for n, text in enumerate(f, 1):
            if "/* @allocation */" in text:
                return n
    return c["culprit_line"]


def line_of(path, marker):
    with open(path) as f:
        for n, text in enumerate(f, 1):
            if marker in text:
                return n
    raise AssertionError(marker)


# ---------------------------------------------------------------------------
# The zoo's native cases: rates, sites, clean twins


@pytest.mark.parametrize("c", CASES, ids=[c["name"] for c in CASES])
def test_native_case_at_its_true_rate_and_line(c):
    cwd = build_zoo_case(c, PY)
    status, result, err = check_json(PY, c["name"] + ":leaky", cwd)
    assert result is not None, (status, err)
    assert (status, result["verdict"]) == (1, "leak"), err
    pc = result["per_call"]
    assert close_to(pc["native_blocks"], c["native"]["blocks"]), pc
    assert close_to(pc["native_bytes"], c["native"]["bytes"]), pc
    if not SANITIZE:                # ASan's allocator has no glibc heap figure
        assert pc["heap_bytes"] >= c["native"]["bytes"]     # the malloc heap holds them too
    top = result["sites"][0]
    culprit = top["culprit"]
    assert (os.path.basename(culprit["file"]), culprit["line"], culprit["function"]) == \
        (os.path.basename(c["path"]), c["culprit_line"], c["culprit_function"]), top
    assert "allocated here and never released" in culprit["reason"], culprit
    assert (os.path.basename(top["file"]), top["line"]) == \
        (os.path.basename(c["path"]), c["culprit_line"]), top
    # The allocation is in the site's stack: the culprit's line, or for an
    # allocation wrapper (the library's record_new, grow()) its malloc/realloc.
    user = [(os.path.basename(f["file"] or ""), f["line"]) for f in top["frames"]]
    assert (os.path.basename(c["path"]), allocation_line(c)) in user, user
    assert (top["blocks_per_call"], top["bytes_per_call"]) == \
        (c["native"]["blocks"], c["native"]["bytes"]), top


@pytest.mark.parametrize("c", CASES, ids=[c["name"] for c in CASES])
def test_native_clean_twin_is_clean(c):
    cwd = build_zoo_case(c, PY)
    status, result, err = check_json(PY, c["name"] + ":clean", cwd)
    assert result is not None, (status, err)
    if asan_resident_memory_only(result):
        return
    assert (status, result["verdict"], result["sites"]) == (0, "clean", []), err
    assert (result["per_call"]["native_blocks"], result["per_call"]["native_bytes"]) == (0, 0)


NO_GLIBC_HEAP = pytest.mark.skipif(bool(SANITIZE), reason="under the sanitizer tier malloc is "
                                   "ASan's: no glibc heap figure")
ASAN_RSS = pytest.mark.skipif(bool(SANITIZE), reason="under the sanitizer tier resident memory "
                              "holds ASan's shadow and quarantine too")
ENGINE_NEEDS_ITS_PRELOAD = pytest.mark.skipif(
    bool(SANITIZE), reason="the sanitized engine needs its runtime first in LD_PRELOAD")


@NO_GLIBC_HEAP
def test_without_native_tracking_the_heap_still_grows():
    """--no-native: the PEP 445 domains only; the leak shows in the C
    library's heap (heap_bytes), with no native figure and no site."""
    c = case("native_strdup")
    cwd = build_zoo_case(c, PY)
    status, result, err = check_json(PY, c["name"] + ":leaky", cwd, "--no-native")
    assert (status, result["verdict"]) == (1, "leak"), err
    assert result["per_call"]["native_bytes"] is None
    assert result["per_call"]["native_blocks"] is None
    assert result["per_call"]["heap_bytes"] >= 90
    assert result["sites"] == []


# ---------------------------------------------------------------------------
# The host process


def test_tracking_started_mid_run():
    """GIVEN blocks malloc'd before tracking and a module imported before it
    WHEN refhound.check() starts tracking from Python THEN the leak is found
    at its line; realloc of a block born before tracking makes it a tracked
    block; frees of blocks born before pass through; stop puts the GOT back."""
    out = run("""
        import json
        import refhound, native_helpers as h, native_strdup
        from refhound import _core
        h.make_untracked(200)
        for _ in range(10):
            native_strdup.leaky()
        real_before = h.malloc_is_real()
        r = refhound.check(native_strdup.leaky)
        _core.start(); _core.native_start()
        real_during = h.malloc_is_real()
        h.grow_untracked()
        grown = _core.native_stats()
        h.free_untracked()
        freed = _core.native_stats()
        _core.stop()
        clean = refhound.check(native_strdup.clean)
        print(json.dumps({"verdict": r.verdict, "per_call": r.per_call,
                          "site": [r.sites[0]["function"], r.sites[0]["line"]],
                          "real": [real_before, real_during, h.malloc_is_real()],
                          "grown": [grown["blocks"], grown["bytes"]],
                          "freed": [freed["blocks"], freed["bytes"]],
                          "clean": clean.verdict}))
    """)
    assert out["verdict"] == "leak" and close_to(out["per_call"]["native_bytes"], 96)
    assert out["site"] == ["leaky", case("native_strdup")["culprit_line"]]
    assert out["real"] == [True, False, True]
    assert out["grown"] == [100, 100 * 480] and out["freed"] == [0, 0]
    assert out["clean"] == "clean"


# Thirty tracking restarts under four POSIX threads that allocate and free
# with every function of the family, each round with a fork made by the
# extension and one made here, whose children allocate.
FORK_ROUNDS = textwrap.dedent("""
    import json, os, time
    import native_helpers as h
    from refhound import _core
    h.hammer_start(4)
    statuses = []
    for i in range(30):
        _core.start(); _core.native_start()
        time.sleep(0.005)
        statuses.append(h.fork_and_alloc())
        pid = os.fork()
        if pid == 0:
            h.clean96()
            os._exit(0)
        statuses.append(os.waitpid(pid, 0)[1])
        _core.stop()
""")


@pytest.mark.skipif(bool(SANITIZE), reason="ASan's allocator (GCC 12's runtime) is not "
                    "fork-safe while other threads allocate: a child can wait forever on a lock "
                    "a parent thread held at the fork (2 of 12 runs under load, the stack in "
                    "the child ends in its SizeClassAllocator64 mutex)")
def test_threads_without_the_gil_fork_and_restarts():
    """GIVEN four POSIX threads allocating and freeing with every function of
    the family WHEN tracking starts and stops thirty times under them, and
    the process forks children that allocate THEN nothing deadlocks or
    crashes, and once the threads are done no native block is left."""
    out = run(FORK_ROUNDS + textwrap.dedent("""
        _core.start(); _core.native_start()
        time.sleep(0.05)
        ops = h.hammer_stop()
        left = _core.native_stats()
        _core.stop()
        print(json.dumps({"statuses": statuses, "ops": ops, "left": left["blocks"],
                          "failure": _core.stats()["failure"]}))
    """))
    assert set(out["statuses"]) == {0} and out["ops"] > 0
    assert out["left"] == 0 and out["failure"] is None


@pytest.mark.skipif(bool(SANITIZE), reason="ASan's allocator is not fork-safe while other "
                    "threads allocate (GCC 12's runtime; see the test above)")
def test_threads_fork_and_restarts_under_the_guard():
    """GIVEN the guard allocator under the native heap (--sanitize), and four
    POSIX threads allocating and freeing with every function of the family
    WHEN tracking starts and stops thirty times under them (a stop leaves
    the wrappers to the guard) and the process forks children that allocate
    THEN nothing deadlocks (a fork waits for the guard's lock) or crashes."""
    out = run(textwrap.dedent("""
        import tempfile
        from refhound import _core
        fd, path = tempfile.mkstemp()
        _core.guard_start(fd, rate=1)
    """) + FORK_ROUNDS + textwrap.dedent("""
        time.sleep(0.05)
        ops = h.hammer_stop()
        guard = _core.guard_stats()
        report = os.path.getsize(path)
        os.unlink(path)
        print(json.dumps({"statuses": statuses, "ops": ops, "guarded": guard["guarded"],
                          "report": report}))
    """), timeout=120)
    assert set(out["statuses"]) == {0} and out["ops"] > 0
    assert out["guarded"] > 0 and out["report"] == 0


@pytest.mark.skipif(bool(SANITIZE), reason="under ASan a fork takes so long that patience "
                    "cannot watch the check out (inconclusive with or without native tracking)")
def test_a_check_whose_target_forks_is_clean():
    out = run("""
        import json, refhound, native_helpers as h
        r = refhound.Checker(calls=10).check(h.fork_and_alloc)
        print(json.dumps({"verdict": r.verdict, "per_call": r.per_call}))
    """)
    assert out["verdict"] == "clean", out


def test_library_dlopened_after_tracking_started():
    """ctypes loads a library after tracking started (a patched dlopen):
    its malloc is tracked and named at its line; after a dlclose and a
    second load it still is."""
    side = os.path.join(helpers_dir(), "side", "libnative_side.so")
    out = run("""
        import ctypes, json, _ctypes, refhound
        from refhound import _core
        _core.start()
        lib = ctypes.CDLL(%r)
        r1 = refhound.check(lib.side_leak96)
        clean = refhound.check(lib.side_clean96)
        _ctypes.dlclose(lib._handle)
        lib = ctypes.CDLL(%r)
        r2 = refhound.check(lib.side_leak96)
        print(json.dumps({"r": [[r.verdict, r.per_call["native_bytes"], r.sites[0]["file"],
                                 r.sites[0]["line"]] for r in (r1, r2)],
                          "clean": clean.verdict}))
    """ % (side, side))
    line = line_of(os.path.join(NATIVE_CASES, "native_side.c"), "side: the culprit")
    for verdict, nbytes, file, at in out["r"]:
        assert (verdict, os.path.basename(file), at) == ("leak", "native_side.c", line)
        assert close_to(nbytes, 96)
    assert out["clean"] == "clean"


def test_bare_name_dlopen_searches_the_callers_runpath():
    """A module dlopen()s "libnative_side.so", found only on its own RUNPATH:
    the loader searches the caller's paths, and with dlopen redirected the
    caller is refhound, which searches them on its behalf."""
    out = run("""
        import json, refhound, native_helpers as h
        from refhound import _core
        _core.start(); _core.native_start()
        loaded = h.load_side()
        r = refhound.check(h.side_leak)
        print(json.dumps({"loaded": loaded, "verdict": r.verdict,
                          "site": os.path.basename(r.sites[0]["file"]) if r.sites else None}))
    """.replace("import json,", "import json, os,"))
    assert out == {"loaded": True, "verdict": "leak", "site": "native_side.c"}


def test_objects_patched():
    out = run("""
        import json, native_helpers
        from refhound import _core
        print(json.dumps(_core.native_objects()))
    """)
    how = {os.path.basename(name): h for name, h in out}
    assert how["(the program)"] == "dl"
    assert how["libc.so.6"] == "skip" and how["ld-linux-x86-64.so.2"] == "skip"
    assert all(h == "dl" for n, h in how.items() if n.startswith("libpython"))
    assert any(n.startswith("_core.") and h == "skip" for n, h in how.items())
    assert any(n.startswith("native_helpers.") and h == "full" for n, h in how.items())


NUMPY_WORK = '''
import numpy as np

keep = []


def work():
    a = np.arange(500.0)
    b = np.sin(a) * 2.0 + a
    m = np.random.default_rng(1).random((12, 12)) + np.eye(12) * 12
    s = (np.linalg.inv(m) @ m).trace() + b.sum()
    c = np.concatenate([a, b]).reshape(2, -1).T.copy()
    str(c[:2])
    return s


def leak():
    keep.append(np.ones(12))
'''


@ASAN_RSS    # numpy's freed arrays fill ASan's quarantine: +261 KB of RSS per call, "growing"
def test_numpy_under_tracking(tmp_path):
    """numpy allocates its data with malloc (through its block cache): a
    function that makes and drops arrays is clean; one that keeps a
    12-double array per call leaks 96 native bytes per call."""
    pytest.importorskip("numpy")
    (tmp_path / "np_work.py").write_text(NUMPY_WORK)
    status, result, err = check_json(PY, "np_work.py:work", str(tmp_path))
    assert (status, result["verdict"]) == (0, "clean"), (err, result["per_call"])
    status, result, err = check_json(PY, "np_work.py:leak", str(tmp_path))
    assert (status, result["verdict"]) == (1, "leak"), err
    assert close_to(result["per_call"]["native_bytes"], 96)
    assert close_to(result["per_call"]["native_blocks"], 1)


@ASAN_RSS
def test_memory_mapped_by_a_library_is_rss_growth_with_the_reason():
    cwd = helpers_dir()
    status, result, err = check_json(PY, "native_helpers:map_leak", cwd, "--patience", "0")
    assert (status, result["verdict"]) == (1, "leak"), err
    assert close_to(result["per_call"]["rss_bytes"], 16384, rel=0.1)
    assert close_to(result["per_call"]["native_bytes"], 0) and close_to(result["per_call"]["blocks"], 0)
    assert any("memory mapped outside malloc" in n for n in result["notes"]), result["notes"]
    status, result, err = check_json(PY, "native_helpers:map_clean", cwd, "--patience", "0")
    assert (status, result["verdict"]) == (0, "clean"), err


@NO_GLIBC_HEAP
def test_a_chunk_the_c_library_allocates_per_call_is_a_leak_of_the_heap():
    """asprintf() allocates inside the C library, where no wrapper sees it:
    only the heap figure grows, by its 64-byte chunk per call; that is a
    chunk per call or more, so not drift.  The twin frees it: clean."""
    cwd = helpers_dir()
    status, result, err = check_json(PY, "native_helpers:libc_leak", cwd)
    assert (status, result["verdict"]) == (1, "leak"), err
    assert close_to(result["per_call"]["heap_bytes"], 64), result["per_call"]
    assert close_to(result["per_call"]["native_bytes"], 0), result["per_call"]
    status, result, err = check_json(PY, "native_helpers:libc_clean", cwd)
    assert (status, result["verdict"]) == (0, "clean"), err


def test_a_buffer_grown_by_realloc_call_after_call():
    """One block whose realloc() grows it by 96 bytes per call: native bytes
    grow, native blocks do not."""
    status, result, err = check_json(PY, "native_helpers:log_append", helpers_dir())
    assert (status, result["verdict"]) == (1, "leak"), err
    assert close_to(result["per_call"]["native_bytes"], 96)
    assert close_to(result["per_call"]["native_blocks"], 0)


PYTEST_PROJECT = '''
import native_helpers as h


def test_leaks_96_bytes():
    h.leak96()


def test_leaks_32_bytes_every_hundred_calls():
    h.leak_sparse()


def test_clean():
    h.clean96()
'''


@ASAN_RSS
def test_pytest_blames_96_bytes_per_call_and_not_a_sub_byte_drift(tmp_path):
    (tmp_path / "test_native_proj.py").write_text(PYTEST_PROJECT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([engine_path(PY), helpers_dir()]),
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run([PY, "-m", "pytest", "-p", "refhound.pytest_plugin", "-p",
                           "no:cacheprovider", "-q", "--refhound", "--refhound-json", "out.json"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=600)
    results = {e["target"].split("::")[-1]: e for e in
               json.loads((tmp_path / "out.json").read_text())}
    assert proc.returncode == 1, proc.stdout[-3000:]
    leak = results["test_leaks_96_bytes"]
    assert leak["pytest"]["outcome"] == "leak"
    assert close_to(leak["per_call"]["native_bytes"], 96)
    sparse = results["test_leaks_32_bytes_every_hundred_calls"]["pytest"]
    assert sparse["outcome"] == "clean", sparse
    assert results["test_clean"]["pytest"]["outcome"] == "clean"


# ---------------------------------------------------------------------------
# refhound run --preload


PRELOAD_SCRIPT = '''
import json, sys
import refhound, native_strdup, native_cpp_new
from refhound import _core
for _ in refhound.loop(name="strdup"):
    native_strdup.leaky()
for _ in refhound.loop(name="new"):
    native_cpp_new.leaky()
for _ in refhound.loop(name="clean"):
    native_strdup.clean()
print(json.dumps({"mode": _core.native_stats()["mode"]}), file=sys.stderr)
'''


@pytest.mark.skipif(bool(SANITIZE),
                    reason="the sanitizer tier preloads its runtimes (LD_PRELOAD), which "
                           "--preload refuses to share; its malloc is ASan's")
def test_run_preload_tracks_the_whole_process(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(PRELOAD_SCRIPT)
    zoo = build_all_cases()
    env = {"PYTHONPATH": os.pathsep.join([engine_path(PY), zoo])}
    proc = run_refhound(PY, ["run", "--preload", "--json", "out.json", str(script)],
                        cwd=str(tmp_path), env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert '{"mode": "preload"}' in proc.stderr
    loops = {e["target"]: e for e in json.loads((tmp_path / "out.json").read_text())}
    for name, c in (("strdup", case("native_strdup")), ("new", case("native_cpp_new"))):
        r = loops[name]
        assert r["verdict"] == "leak" and close_to(r["per_call"]["native_bytes"], 96), r
        top = r["sites"][0]
        assert (os.path.basename(top["file"]), top["line"]) == \
            (os.path.basename(c["path"]), c["culprit_line"]), top
    assert loops["clean"]["verdict"] == "clean"
    # Every sample's native figures move by the loop's own blocks and nothing
    # else: the C library's blocks made for the engine (open_memstream's
    # buffer, freed by the engine) must not linger in the tracker's table
    # (they bent the rate to 99.7, or 133 at ten calls an iteration).
    for name, per_call in (("strdup", 96), ("new", 96), ("clean", 0)):
        r = loops[name]
        samples = r["samples"][r["iterations"]["warmup"]:]
        steps = {b["native_bytes"] - a["native_bytes"] for a, b in zip(samples, samples[1:])}
        assert steps == {per_call * r["calls_per_iteration"]}, (name, steps)


@ENGINE_NEEDS_ITS_PRELOAD
def test_run_preload_refuses_another_ld_preload(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("print('hi')\n")
    proc = run_refhound(PY, ["run", "--preload", str(script)], cwd=str(tmp_path),
                        env={"LD_PRELOAD": "libnothing.so"})
    assert proc.returncode == 2
    assert "LD_PRELOAD is already set" in proc.stderr and "Traceback" not in proc.stderr
