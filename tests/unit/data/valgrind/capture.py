"""Regenerate the saved memcheck XML of tests/unit (run by hand, rarely).

    python3 tests/unit/data/valgrind/capture.py              # zoo, pytest, check
    python3 tests/unit/data/valgrind/capture.py simplejson   # the real suite only

Builds the cases below with tests/cbuild.py, runs three programs under
`refhound valgrind --xml-dir` (Valgrind and its headers needed, about two
minutes) and writes here, trimmed:

  zoo.xml      tests/valgrind_cases/driver.py over zoo and memory-error cases,
               each function in a "call" scope with 2 warm-up and 4 measured
               iterations of 10 calls (a leak search at every boundary)
  pytest.xml   pytest on tests/valgrind_cases/sample_tests.py with refhound's
               per-test scopes plugin
  check.xml    refhound.Checker on new_object.leaky and .clean (the checker's
               own iteration markers)
  interpreter.json   what the launcher learnt about the interpreter (the
               user-frame filter needs it)
  simplejson_dump.xml  a real suite: pytest on test_dump.py of simplejson
               3.19.3 (its source from PyPI, built in place in
               build/pypi), the per-test scopes plugin loaded; needs the
               network the first time

Trimming keeps every element and its order; it only cuts each stack to its
first FRAMES frames (the JSON report shows 12) and rewrites the machine's
paths (the checkout, the build folder) to neutral ones, so the files do not
depend on where they were made.  The tests assert what was true of the run:
regenerate them together with the expectations.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
FRAMES = 12
CHECKOUT = "/home/dev/refhound"
MODULES = CHECKOUT + "/build/modules"

CASES = (["tests/zoo/%s.c" % n for n in ("new_object", "nested_list", "rawmem_buffer",
                                         "every_tenth", "gc_cycle_no_gc")]
         + ["tests/unit/data/valgrind/first_calls.c"]
         + ["tests/valgrind_cases/%s.c" % n for n in ("uaf_read", "uaf_borrowed_decref",
                                                      "overflow_write", "double_free",
                                                      "uninit_read")])

CHECK = """
import refhound, new_object
c = refhound.Checker(warmup=1, min_iterations=4, iterations=5, calls=10)
for f in (new_object.leaky, new_object.clean):
    r = c.check(f)
    print('RESULT', r.target, r.verdict)
"""


def rewrite(text, tmp):
    """The machine's paths to neutral ones."""
    text = text.replace(os.path.join(tmp, "modules"), MODULES)
    text = text.replace(ROOT, CHECKOUT)
    return text.replace(tmp, "/tmp/refhound-capture")


def trim(src, dst, tmp):
    """Copy a memcheck XML file, each <stack> cut to FRAMES frames."""
    out = []
    frames = None
    with open(src, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            stripped = line.strip()
            if stripped == "<stack>":
                frames = 0
            elif stripped == "</stack>":
                frames = None
            elif frames is not None:
                if stripped == "<frame>":
                    frames += 1
                if frames > FRAMES:
                    continue
            out.append(line)
    with open(dst, "w") as fh:
        fh.write(rewrite("".join(out), tmp))


SIMPLEJSON = ("simplejson", "3.19.3")


def capture_simplejson(tmp):
    sys.path.insert(0, os.path.join(ROOT, "tests", "valgrind_cases"))
    import pypi
    folder = pypi.ensure_built(SIMPLEJSON[0], SIMPLEJSON[1], os.path.join(ROOT, "build", "pypi"))
    env = dict(os.environ, REFHOUND_CACHE_DIR=os.path.join(tmp, "cache"),
               PYTHONPATH=os.path.join(ROOT, "src"))
    xml_dir = os.path.join(tmp, "simplejson")
    subprocess.run([sys.executable, "-m", "refhound", "valgrind", "--xml-dir", xml_dir, "--",
                    sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
                    os.devnull, "--rootdir", ".", "simplejson/tests/test_dump.py"],
                   cwd=folder, env=env, check=False)
    (xml,) = [f for f in os.listdir(xml_dir) if f.endswith(".xml")]
    trim(os.path.join(xml_dir, xml), os.path.join(HERE, "simplejson_dump.xml"), tmp)


def main(which=()):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    sys.path.insert(0, os.path.join(ROOT, "src"))
    import cbuild
    from refhound._valgrind import launcher, suppressions

    tmp = tempfile.mkdtemp(prefix="refhound-capture-")
    try:
        if "simplejson" in which:
            capture_simplejson(tmp)
            if list(which) == ["simplejson"]:
                return
        modules = os.path.join(tmp, "modules")
        for case in CASES:
            cbuild.build_extension(os.path.join(ROOT, case), modules)
        names = [os.path.splitext(os.path.basename(c))[0] for c in CASES]
        env = dict(os.environ, REFHOUND_CACHE_DIR=os.path.join(tmp, "cache"),
                   PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), modules]))
        runs = {
            "zoo": [sys.executable, "tests/valgrind_cases/driver.py", "--calls", "10",
                    modules] + names,
            "pytest": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:benchmark",
                       "-p", "no:xdist", "tests/valgrind_cases/sample_tests.py"],
            "check": [sys.executable, "-c", CHECK],
        }
        for name, cmd in runs.items():
            xml_dir = os.path.join(tmp, name)
            subprocess.run([sys.executable, "-m", "refhound", "valgrind", "--xml-dir", xml_dir,
                            "--"] + cmd, cwd=ROOT, env=env, check=False)
            (xml,) = [f for f in os.listdir(xml_dir) if f.endswith(".xml")]
            trim(os.path.join(xml_dir, xml), os.path.join(HERE, name + ".xml"), tmp)
        info = suppressions.probe_interpreter(sys.executable, launcher.child_env("malloc", env))
        with open(os.path.join(HERE, "interpreter.json"), "w") as fh:
            fh.write(rewrite(json.dumps(info, indent=1, sort_keys=True), tmp) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
