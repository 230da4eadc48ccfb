"""The host process is sacred: the engine never reads memory it does not
own, never reads what was freed, never crashes or runs the check where it
does not belong.

Each case runs in a fresh interpreter (a crash there is a failed test, not
a dead test run) with a C library of tests/engine_cases built for it:
static_ptrs.c keeps static pointers to memory that only looks like
objects; guard_alloc.c fences small blocks with an unreadable page.
"""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from support import BUILD, ROOT, cbuild, engine_path

CASES = os.path.join(ROOT, "tests", "engine_cases")


def _build(name):
    out = os.path.join(BUILD, "engine_cases")
    cbuild.build_extension(os.path.join(CASES, name + ".c"), out, python=sys.executable)
    return out


def run(code, env=None, modules=("static_ptrs",)):
    """Run `code` in a fresh interpreter with the engine and the test
    modules importable; returns the CompletedProcess."""
    paths = [engine_path(sys.executable)] + sorted({_build(m) for m in modules})
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=300)


def died(proc):
    return "killed by signal %d" % -proc.returncode if proc.returncode < 0 else ""


def test_adoption_never_touches_a_mapping_without_pages():
    """GIVEN a static pointer into a readable mapping of an empty file (an
    access raises SIGBUS) WHEN tracking starts (adoption follows static
    pointers) THEN the pointer is judged by a copy the kernel makes, and
    the program goes on."""
    proc = run("""
        import static_ptrs
        from refhound import _core
        static_ptrs.make_unbacked()
        print(_core.start(), _core.is_tracking())
        print(_core.stats()["adopted"]["static_skipped"])
        _core.stop()
    """)
    assert proc.returncode == 0, (died(proc), proc.stderr)
    assert proc.stdout.split() == ["True", "True", "None"]


def test_static_pointer_to_freed_memory_is_never_read():
    """GIVEN a C library's static pointer to a malloc'd struct shaped like a
    float (big enough that free() unmaps it) WHEN it is adopted at start,
    then freed by plain free() THEN the engine drops it instead of reading
    it: object_at() says None, samples and snapshots go on."""
    proc = run("""
        import static_ptrs
        from refhound import _core
        addr = static_ptrs.make_fake(1 << 20)
        _core.start()
        seen = _core.object_at(addr)
        print(type(seen).__name__, seen)
        del seen
        static_ptrs.free_fake()
        print(_core.object_at(addr))
        s = _core.Session(lambda: None, (), None, None, 10)
        for _ in range(3):
            s.iterate(snapshot=True)
        print(s.nsamples, len(s.growth(5)) >= 0)
        s.close()
        _core.stop()
    """)
    assert proc.returncode == 0, (died(proc), proc.stderr)
    assert proc.stdout.splitlines() == ["float 2.5", "None", "3 True"]


def test_static_pointer_to_memory_freed_through_the_raw_domain_is_dropped():
    proc = run("""
        import static_ptrs
        from refhound import _core
        addr = static_ptrs.make_fake_raw()
        _core.start()
        print(_core.object_at(addr))
        static_ptrs.free_fake_raw()
        print(_core.object_at(addr))
        _core.stop()
    """)
    assert proc.returncode == 0, (died(proc), proc.stderr)
    assert proc.stdout.splitlines() == ["3.5", "None"]


def test_bytes_shaped_like_a_gc_object_the_gc_does_not_know_are_not_adopted():
    """libpython's _PyOS_optarg pointed into freed argv memory whose bytes
    read as an "async_generator" with refcount 1957: an object of a GC type
    is adopted only if the GC knows it."""
    proc = run("""
        import static_ptrs
        from refhound import _core
        addr = static_ptrs.make_fake_gc()
        _core.start()
        print(_core.object_at(addr) is None)
        print(_core.stats()["adopted"].get("static_rejected", 0) > 0)
        _core.stop()
    """)
    assert proc.returncode == 0, (died(proc), proc.stderr)
    assert proc.stdout.split() == ["True", "True"]


def test_debug_hooks_probe_reads_only_inside_its_block():
    """GIVEN an object allocator whose small blocks start right after an
    unreadable page WHEN pymalloc_stats() asks whether CPython's debug
    hooks are on THEN it reads nothing in front of its probe block."""
    proc = run("""
        import guard_alloc
        from refhound import _core
        guard_alloc.install()
        stats = _core.pymalloc_stats()
        guard_alloc.disarm()
        print(stats["debug_hooks"])
    """, modules=("guard_alloc",))
    assert proc.returncode == 0, (died(proc), proc.stderr)
    assert proc.stdout.split() == ["False"]


@pytest.mark.parametrize("mode, hooks", [("malloc", "False"), ("pymalloc", "False"),
                                         ("debug", "True"), ("malloc_debug", "True")])
def test_debug_hooks_are_told_apart(mode, hooks):
    proc = run("""
        from refhound import _core
        print(_core.pymalloc_stats()["debug_hooks"])
        _core.start()
        print(_core.pymalloc_stats()["debug_hooks"])
        _core.stop()
    """, env={"PYTHONMALLOC": mode}, modules=())
    assert proc.returncode == 0, (died(proc), proc.stderr)
    assert proc.stdout.split() == [hooks, hooks]


def test_out_of_memory_while_adopting_is_a_stated_failure():
    """GIVEN a block table that cannot hold the objects alive at start WHEN
    tracking starts THEN start() succeeds, tracking is marked failed with
    the reason, and a Session says so with TrackingError."""
    proc = run("""
        from refhound import _core
        print(_core.start())
        stats = _core.stats()
        print(stats["tracking"], _core.is_tracking())
        print(stats["failure"])
        try:
            _core.Session(lambda: None, (), None, None, 1)
        except _core.TrackingError as exc:
            print("TrackingError:", exc)
        _core.stop()
        print(_core.stats()["failure"])
    """, env={"REFHOUND_MAX_BLOCKS": "4096"}, modules=())
    assert proc.returncode == 0, (died(proc), proc.stderr)
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["True", "False False"], proc.stdout
    assert "while adopting" in lines[2] and "out of memory" in lines[2], lines[2]
    assert lines[3] == "TrackingError: tracking stopped: " + lines[2]
    assert lines[4] == lines[2]         # still readable after stop(), until the next start()


def test_fork_children_walk_with_a_helper_of_their_own():
    """The two-thread heap walk's helper does not survive a fork: a child
    (and its child) starts its own and its screens finish, with the same
    totals at both walks and one more thread than the program's."""
    proc = run("""
        import gc, os, sys
        from refhound import _core
        _core.start()
        heap = [{"n": i} for i in range(80000)]     # above the two-thread size

        def noop():
            pass

        def screen():
            gc.disable()
            try:
                return _core.Session.screen(noop, (), None, 1, 1, 1)
            finally:
                gc.enable()

        print("parent", screen()["threads"], flush=True)
        for depth in range(2):
            pid = os.fork()
            if pid:
                _, status = os.waitpid(pid, 0)
                sys.exit(os.waitstatus_to_exitcode(status))
            r = screen()
            assert r["refs"][0] == r["refs"][1], r
            print("child", depth, r["threads"], flush=True)
    """, modules=())
    assert proc.returncode == 0, proc.stderr[-2000:] + died(proc)
    lines = proc.stdout.split("\n")
    assert lines[:3] == ["parent (2, 2)", "child 0 (2, 2)", "child 1 (2, 2)"], proc.stdout


def test_a_forked_child_returning_from_the_target_leaves_the_loop():
    """GIVEN a target that forks, whose child returns WHEN a Session calls
    it THEN the child leaves at once (exit 0, nothing of the parent's
    flushed) and only the parent goes on with the check."""
    proc = run("""
        import os, sys
        from refhound import _core
        children = []
        def target():
            pid = os.fork()
            if pid:
                children.append(pid)
        _core.start()
        print("buffered by the parent", os.getpid())     # not flushed by the child
        s = _core.Session(target, (), None, None, 3)
        s.iterate()
        statuses = [os.waitpid(pid, 0)[1] for pid in children]
        print("done", os.getpid(), len(children), statuses)
        s.close()
        _core.stop()
    """, modules=())
    assert proc.returncode == 0, (died(proc), proc.stderr)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout
    pid = lines[0].split()[-1]
    assert lines[1] == "done %s 3 [0, 0, 0]" % pid


@pytest.mark.parametrize("header", sorted(
    h for h in os.listdir(os.path.join(ROOT, "src", "core")) if h.endswith(".h")))
def test_internal_headers_refuse_inclusion_from_outside(header, tmp_path):
    import sysconfig
    src = tmp_path / "outside.c"
    src.write_text('#include "%s"\n' % header)
    proc = subprocess.run(["cc", "-fsyntax-only", "-iquote", os.path.join(ROOT, "src", "core"),
                           "-I", sysconfig.get_paths()["include"], str(src)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "internal to refhound's engine" in proc.stderr
