"""Start a Python program with refhound's memcheck-annotated allocator.

    python [interpreter options] -m refhound._valgrind.boot [--allocator pool|malloc]
           [--quarantine BYTES] (-c CMD | -m MODULE | - | SCRIPT) [ARGS...]

`refhound valgrind` rewrites `python ... -m pytest -x` into this form.  The
allocator must be swapped before the program allocates its objects, and an
environment hook (sitecustomize, PYTHONSTARTUP, a .pth file) is not run for
every way of starting Python (-I, -S, scripts vs -c) or would shadow the
user's own; a boot module in front of the program is run in every case,
needs no file outside the package and leaves the program's sys.argv,
sys.path[0] and __main__ as Python would have set them.

The interpreter starts with PYTHONMALLOC=malloc (set by the launcher), so
what it allocates before this module runs is made of malloc blocks that
memcheck sees too; the pool allocator then serves every later mem/obj block
and hands the older ones back to malloc (see src/core/vgpool.c).  If the
pool cannot be installed (refhound built without Valgrind's headers, an
interpreter refhound was not built for), the run goes on with plain malloc
and a warning: memcheck still sees every object, only slower.
"""
import os
import sys


def _usage(message):
    sys.stderr.write("refhound: error: boot: %s\n" % message)
    sys.exit(2)


def _install(allocator, quarantine):
    if allocator not in ("pool", "pool-blind"):
        return "malloc"
    try:
        from .. import _core
        if allocator == "pool-blind":     # measurements only: memcheck not told
            _core.vgpool_install(quarantine=0, annotate=False)
        else:
            _core.vgpool_install(quarantine=quarantine)
        return allocator
    except Exception as exc:  # noqa: BLE001 - any failure degrades to malloc
        sys.stderr.write("refhound: warning: the pool allocator is not available (%s); "
                         "running with PYTHONMALLOC=malloc\n" % exc)
        return "malloc"


def _run_code(code, filename, argv):
    import types
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    sys.argv[:] = argv
    exec(compile(code, filename, "exec"), main.__dict__)


def main(argv):
    allocator, quarantine = "pool", 21000000
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        opt = argv[i]
        if opt == "--allocator" and i + 1 < len(argv):
            allocator = argv[i + 1]
            i += 2
        elif opt == "--quarantine" and i + 1 < len(argv):
            try:
                quarantine = int(argv[i + 1])
            except ValueError:
                _usage("--quarantine wants a number")
            i += 2
        elif opt == "--":
            i += 1
            break
        else:
            _usage("unknown option %r" % opt)
    if allocator not in ("pool", "malloc", "pool-blind"):
        _usage("--allocator is pool or malloc")
    rest = argv[i:]
    if not rest:
        _usage("nothing to run (-c CMD, -m MODULE, - or SCRIPT)")

    used = _install(allocator, quarantine)
    from . import mark
    mark("boot", allocator=used, pid=os.getpid())

    first = rest[0]
    if first == "-c":
        if len(rest) < 2:
            _usage("-c wants a command")
        if sys.path and sys.path[0] == os.getcwd():
            sys.path[0] = ""
        _run_code(rest[1], "<string>", ["-c"] + rest[2:])
    elif first == "-m":
        if len(rest) < 2:
            _usage("-m wants a module name")
        import runpy
        sys.argv[:] = [rest[1]] + rest[2:]
        runpy._run_module_as_main(rest[1], alter_argv=True)
    elif first == "-":
        if sys.path and sys.path[0] == os.getcwd():
            sys.path[0] = ""
        _run_code(sys.stdin.read(), "<stdin>", ["-"] + rest[1:])
    else:
        import runpy
        script = first
        if not os.path.exists(script):
            sys.stderr.write("%s: can't open file %r: [Errno 2] No such file or directory\n"
                             % (sys.executable, script))
            sys.exit(2)
        if sys.path:
            sys.path[0] = os.path.dirname(os.path.realpath(script))
        sys.argv[:] = rest
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
