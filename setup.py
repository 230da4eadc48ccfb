"""Build the C engine (refhound._core), the bundled demo extension and the
preload library (refhound._preload, src/preload).

Everything else about the package lives in pyproject.toml.  The engine is
one extension built from every file in src/core and src/core/binding;
Valgrind's headers, when present, are switched on with HAVE_VALGRIND.
elfutils' libdw needs nothing at build time: the engine loads libdw.so.1
at run time when the system has it (src/core/dwapi.c) and otherwise reads
DWARF with pyelftools, a dependency.
"""
import glob
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CFLAGS = ["-O2", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wextra",
          "-Wno-unused-parameter", "-Wno-missing-field-initializers",
          "-std=gnu11"]

# The engine (src/core/*.c) and its binding, the only C that builds Python
# objects (src/core/binding/*.c).
core_sources = sorted(glob.glob("src/core/*.c")) + sorted(glob.glob("src/core/binding/*.c"))

# REFHOUND_SANITIZE=1: the engine built with AddressSanitizer and UBSan, for the
# sanitizer test tier (.ci/sanitize); every error ends the process.
# REFHOUND_SANITIZE=recover: the same, built so that ASAN_OPTIONS/UBSAN_OPTIONS
# halt_on_error=0 can go on after an error (to list them all).  The interpreter
# is not instrumented, so the sanitizer runtime must be preloaded:
#   LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
# Only the engine is instrumented; the bundled demo stands for the user's code.
SANITIZE = os.environ.get("REFHOUND_SANITIZE", "")
if SANITIZE not in ("", "0", "1", "recover"):
    raise SystemExit("REFHOUND_SANITIZE=%r: use 1 or recover" % SANITIZE)
SANITIZE_FLAGS = []
if SANITIZE in ("1", "recover"):
    SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                      "-fsanitize-recover=all" if SANITIZE == "recover"
                      else "-fno-sanitize-recover=all"]
    CFLAGS = [f for f in CFLAGS if f != "-O2"] + ["-O1"] + SANITIZE_FLAGS


def have_valgrind_headers():
    """Valgrind's client-request headers (Debian/Ubuntu: the valgrind package;
    Fedora: valgrind-devel).  REFHOUND_NO_VALGRIND=1 builds without them."""
    if os.environ.get("REFHOUND_NO_VALGRIND") == "1":
        return False
    for inc in ("/usr/include", "/usr/local/include"):
        if all(os.path.exists(os.path.join(inc, "valgrind", h))
               for h in ("valgrind.h", "memcheck.h")):
            return True
    return False


core_macros = [("REFHOUND_CORE_BUILD", "1")]
core_libraries = ["pthread", "dl"]
if have_valgrind_headers():
    core_macros.append(("HAVE_VALGRIND", "1"))

setup(
    ext_modules=[
        Extension(
            "refhound._core",
            sources=core_sources,
            # Quote includes only: an engine header never hides a system one
            # (src/core/unwind.h and <unwind.h>).
            include_dirs=["src/refhound/include"],
            define_macros=core_macros,
            extra_compile_args=CFLAGS + ["-iquote", "src/core", "-iquote", "src/core/binding"],
            extra_link_args=SANITIZE_FLAGS,
            libraries=core_libraries,
        ),
        Extension(
            "refhound._demo",
            sources=["src/demo/demo.c"],
            extra_compile_args=["-O0", "-g"],
        ),
        # The preload library of `refhound run --preload` (LD_PRELOAD: malloc & co.
        # for a whole process); never imported.  -O2 so every entry point ends in a
        # tail call and leaves no frame in the recorded stacks.
        Extension(
            "refhound._preload",
            sources=["src/preload/preload.c"],
            extra_compile_args=["-O2", "-g", "-fvisibility=hidden", "-foptimize-sibling-calls",
                                "-Wall", "-Wextra", "-std=gnu11"],
            libraries=["dl"],
        ),
    ],
)
