"""Run bug-zoo and Valgrind cases in one process, each function in its own
refhound scope, for `refhound valgrind -- python driver.py ...`.

    python driver.py [--warmup W] [--measured M] [--calls N] [--only FUNCTION]
                     MODULE_DIR CASE [CASE ...]

For every CASE (a module in MODULE_DIR) and each of its functions `leaky`
and `clean`: a scope named "CASE:FUNCTION" (kind "call"), then W warm-up and
M measured iterations of N calls each (default 2, 4, 1), with a leak search at every
iteration boundary (refhound._valgrind.Scope.iteration), exactly as
refhound.check does under Valgrind.  The launcher then classifies each
loss record as a per-call leak or a one-time allocation and ties each
memory error to its scope.
"""
import gc
import importlib
import sys

from refhound import _valgrind


def run_case(name, warmup, measured, calls, only=None):
    mod = importlib.import_module(name)
    for fname in ("leaky", "clean"):
        if only and fname != only:
            continue
        func = getattr(mod, fname)
        scope = _valgrind.begin("%s:%s" % (name, fname), "call")
        for i in range(warmup + measured):
            for _ in range(calls):
                func()
            gc.collect()            # as a check does between iterations
            if scope is not None:
                phase = "warm-up" if i < warmup else "measuring"
                scope.iteration(phase, i + 1, calls)
        _valgrind.end(scope)


def main(argv):
    warmup, measured, calls, only = 2, 4, 1, None
    while argv and argv[0].startswith("--"):
        if argv[0] == "--warmup":
            warmup = int(argv[1])
        elif argv[0] == "--measured":
            measured = int(argv[1])
        elif argv[0] == "--calls":
            calls = int(argv[1])
        elif argv[0] == "--only":
            only = argv[1]
        else:
            raise SystemExit("unknown option %s" % argv[0])
        argv = argv[2:]
    sys.path.insert(0, argv[0])
    if not _valgrind.running():
        sys.stderr.write("driver: not under Valgrind (the scopes do nothing)\n")
    for name in argv[1:]:
        run_case(name, warmup, measured, calls, only)


if __name__ == "__main__":
    main(sys.argv[1:])
