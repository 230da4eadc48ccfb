"""`refhound build-python`, on a minimal fake CPython source tree.

What is exercised: the real command, end to end, against a source tree
made of Include/patchlevel.h (the version, as in CPython) and a `configure`
shell script that records its arguments, environment and working
directory, and writes a Makefile whose `all` prints compiler lines and
whose `install` puts a link to the interpreter running the tests at
PREFIX/bin/pythonX.Y.  So: the per-version configure options and flags,
the out-of-tree build directory, progress, logs, failure handling, the
summary and the read-back of the installed interpreter are all real; the
compiler and CPython's own configure are not run (no CPython source tree
on these machines: `apt-get source` has no deb-src lines).  The pyconfig.h
read-back is checked on the real pyconfig.h files installed here.
"""
import os
import re
import sys

import pytest

from support import ROOT, interpreter, run_refhound

PATCHLEVEL = """\
/* Python version identification scheme (a fake tree for refhound's tests) */
#define PY_MAJOR_VERSION        {major}
#define PY_MINOR_VERSION        {minor}
#define PY_MICRO_VERSION        {micro}
#define PY_RELEASE_LEVEL        PY_RELEASE_LEVEL_FINAL
#define PY_RELEASE_SERIAL       0
#define PY_VERSION              "{major}.{minor}.{micro}"
"""

CONFIGURE = r"""#!/bin/sh
# A stand-in for CPython's configure: records how it was called.
for a in "$@"; do printf '%s\n' "$a"; done > configure.args
printf 'CFLAGS=%s\nCPPFLAGS=%s\nPWD=%s\n' "$CFLAGS" "$CPPFLAGS" "$(pwd)" > configure.env
echo "checking for gcc... gcc"
echo "checking for --with-pydebug... yes"
[ -n "$FAKE_CONFIGURE_FAIL" ] && { echo "configure: error: $FAKE_CONFIGURE_FAIL" >&2; exit 1; }
prefix=
for a in "$@"; do case "$a" in --prefix=*) prefix="${a#--prefix=}";; esac; done
cat > Makefile <<EOF
all:
	@echo "gcc -c -g -Og -fno-omit-frame-pointer -o Objects/listobject.o ../Objects/listobject.c"
	@echo "gcc -c -g -Og -fno-omit-frame-pointer -o Objects/dictobject.o ../Objects/dictobject.c"
	@echo "gcc -c -g -Og -fno-omit-frame-pointer -o Python/ceval.o ../Python/ceval.c"
install:
	mkdir -p $prefix/bin
	ln -sf $FAKE_PYTHON $prefix/bin/python$FAKE_VERSION
	ln -sf $FAKE_PYTHON $prefix/bin/python3
EOF
"""

VERSIONS = [(3, 9, 18), (3, 10, 13), (3, 11, 7), (3, 12, 1), (3, 13, 0)]
MACROS = ["-DPyFloat_MAXFREELIST=0", "-DPyList_MAXFREELIST=0", "-DPyDict_MAXFREELIST=0",
          "-DPyTuple_MAXFREELIST=0", "-D_PyAsyncGen_MAXFREELIST=0"]
HAVE_VALGRIND_H = os.path.isfile("/usr/include/valgrind/valgrind.h")


def make_tree(root, version):
    src = root / ("Python-%d.%d.%d" % version)
    (src / "Include").mkdir(parents=True)
    (src / "Include" / "patchlevel.h").write_text(
        PATCHLEVEL.format(major=version[0], minor=version[1], micro=version[2]))
    conf = src / "configure"
    conf.write_text(CONFIGURE)
    conf.chmod(0o755)
    return src


def build_python(src, prefix, *extra, env=None):
    python = interpreter("release")
    m = re.match(r"Python-(\d+\.\d+)", src.name)
    full_env = {"FAKE_PYTHON": python, "FAKE_VERSION": m.group(1) if m else ""}
    full_env.update(env or {})
    return run_refhound(python, ["build-python", str(src), "--prefix", str(prefix)] + list(extra),
                        env=full_env, timeout=120)


def recorded(prefix):
    build = prefix / "build"
    args = (build / "configure.args").read_text().splitlines()
    env = dict(line.split("=", 1) for line in (build / "configure.env").read_text().splitlines())
    return args, env


@pytest.mark.parametrize("version", VERSIONS, ids=["%d.%d" % v[:2] for v in VERSIONS])
def test_configure_options_per_version(tmp_path, version):
    src = make_tree(tmp_path, version)
    before = sorted(p.name for p in src.rglob("*"))
    prefix = tmp_path / "leakpy"
    proc = build_python(src, prefix, "--configure-only")
    assert proc.returncode == 0, proc.stderr
    args, env = recorded(prefix)
    assert args[:2] == ["--prefix=%s" % prefix, "--with-pydebug"]
    assert "--without-pymalloc" in args
    assert ("--with-valgrind" in args) == HAVE_VALGRIND_H
    assert "--with-trace-refs" not in args
    assert "-fno-omit-frame-pointer" in env["CFLAGS"].split()
    if version[:2] >= (3, 11):
        assert "--without-freelists" in args
        assert "MAXFREELIST" not in env["CPPFLAGS"]
    else:
        assert "--without-freelists" not in args
        assert env["CPPFLAGS"].split()[-len(MACROS):] == MACROS
    # Out of tree: configure ran in PREFIX/build, the source tree is untouched.
    assert os.path.samefile(env["PWD"], prefix / "build")
    assert sorted(p.name for p in src.rglob("*")) == before
    assert (prefix / "build" / "refhound-configure.log").read_text().startswith("checking for gcc")
    assert "Enabled for leak hunting:" in proc.stdout
    assert "free lists off" in proc.stdout
    assert "Configured in %s" % (prefix / "build") in proc.stdout


def test_user_flags_are_kept_and_options_added(tmp_path):
    src = make_tree(tmp_path, (3, 10, 13))
    prefix = tmp_path / "p"
    proc = build_python(src, prefix, "--configure-only", "--trace-refs", "--with-pymalloc",
                        "--no-valgrind", "--configure-arg=--enable-shared",
                        env={"CFLAGS": "-O1", "CPPFLAGS": "-I/opt/include"})
    assert proc.returncode == 0, proc.stderr
    args, env = recorded(prefix)
    assert "--with-trace-refs" in args and "--enable-shared" in args
    assert "--without-pymalloc" not in args and "--with-valgrind" not in args
    assert env["CFLAGS"] == "-O1 -fno-omit-frame-pointer"
    assert env["CPPFLAGS"] == "-I/opt/include " + " ".join(MACROS)


def test_full_build_shows_progress_and_checks_the_result(tmp_path):
    src = make_tree(tmp_path, (3, 11, 7))
    prefix = tmp_path / "p"
    proc = build_python(src, prefix, "--jobs", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # progress: one line per step, with the files compiled
    assert re.search(r"^refhound build-python: make: make -j1$", proc.stderr, re.M), proc.stderr
    assert re.search(r"^  make: done in \d+s, 3 files compiled \(log: .*refhound-make.log\)$",
                     proc.stderr, re.M), proc.stderr
    assert re.search(r"^  install: done in \d+s", proc.stderr, re.M)
    # the summary asks the installed interpreter (here a link to the test's own)
    assert "Installed interpreter says:" in proc.stdout
    assert "version                      %d.%d.%d" % sys.version_info[:3] in proc.stdout
    assert "sys.gettotalrefcount         NO" in proc.stdout
    assert "-m refhound check MODULE:CALLABLE" in proc.stdout


def test_configure_failure_is_exit_3_with_the_log(tmp_path):
    src = make_tree(tmp_path, (3, 12, 1))
    prefix = tmp_path / "p"
    proc = build_python(src, prefix, env={"FAKE_CONFIGURE_FAIL": "no acceptable C compiler"})
    assert proc.returncode == 3
    log = prefix / "build" / "refhound-configure.log"
    assert proc.stderr.splitlines()[-1] == (
        "refhound: error: configure failed (exit 1); the last lines of %s say why" % log)
    assert "no acceptable C compiler" in log.read_text()
    assert not (prefix / "build" / "refhound-make.log").exists()


def test_dry_run_prints_the_commands(tmp_path):
    src = make_tree(tmp_path, (3, 9, 18))
    prefix = tmp_path / "p"
    proc = build_python(src, prefix, "--dry-run", "-j", "2")
    assert proc.returncode == 0, proc.stderr
    assert "  cd %s" % (prefix / "build") in proc.stdout
    # the environment is printed sorted by name: CFLAGS, then CPPFLAGS
    assert re.search(r"CFLAGS=\S+ CPPFLAGS='[^']*-DPyFloat_MAXFREELIST=0", proc.stdout), proc.stdout
    assert "  make -j2\n" in proc.stdout and "  make install\n" in proc.stdout
    assert not prefix.exists()


@pytest.mark.parametrize("case, message", [
    ("missing", "no such directory"),
    ("no-configure", "has no configure script"),
    ("old", "is CPython 3.8.18; refhound supports 3.9 and newer"),
    ("configured", "has been configured in place; run `make distclean` there first"),
])
def test_bad_source_tree_is_a_usage_error(tmp_path, case, message):
    src = make_tree(tmp_path, (3, 8, 18) if case == "old" else (3, 11, 7))
    if case == "missing":
        src = tmp_path / "nowhere"
    elif case == "no-configure":
        (src / "configure").unlink()
    elif case == "configured":
        (src / "Makefile").write_text("all:\n")
    proc = build_python(src, tmp_path / "p")
    assert proc.returncode == 2
    assert proc.stderr.startswith("refhound: error: ") and message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


def test_prefix_is_required(tmp_path):
    src = make_tree(tmp_path, (3, 11, 7))
    proc = run_refhound(interpreter("release"), ["build-python", str(src)])
    assert proc.returncode == 2 and "--prefix" in proc.stderr


def test_pyconfig_read_back_on_real_headers(tmp_path):
    import sysconfig
    sys.path.insert(0, os.path.join(ROOT, "src"))
    try:
        from refhound.commands.build_python import verify_pyconfig
    finally:
        sys.path.pop(0)
    inc = sysconfig.get_paths()["include"]
    got = verify_pyconfig(inc)
    assert got["WITH_PYMALLOC"] == bool(sysconfig.get_config_var("WITH_PYMALLOC"))
    assert got["Py_DEBUG"] == bool(sysconfig.get_config_var("Py_DEBUG"))
    debug = "/usr/include/x86_64-linux-gnu/python3.11d"
    if os.path.isfile(os.path.join(debug, "pyconfig.h")):
        got = verify_pyconfig(debug)
        assert got["Py_DEBUG"] and got["WITH_VALGRIND"] and got["WITH_PYMALLOC"]
        assert not got["Py_TRACE_REFS"]
    assert verify_pyconfig(str(tmp_path)) is None
