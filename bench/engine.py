"""Which refhound the benchmarks run.

    --engine HEAD       (default) the committed engine: `git archive HEAD`
                        built into build/bench/engine-<commit>, so figures
                        belong to a commit and not to whatever is half-edited
    --engine worktree   the working tree, built as the tests build it
                        (tests/support.py)
    --engine DIR        a folder holding the refhound package (e.g. DIR/src
                        of a prototype copy of the tree)
"""
import os
import platform
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, "build", "bench")


def _git(*args):
    try:
        return subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return ""


def _build_commit(python, commit):
    out = os.path.join(BUILD, "engine-" + commit)
    pkg = os.path.join(out, "src")
    marker = os.path.join(out, ".built")
    if os.path.exists(marker):
        return pkg
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    archive = subprocess.run(["git", "-C", ROOT, "archive", commit], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
    proc = subprocess.run([python, "setup.py", "-q", "build_ext", "--inplace"], cwd=out,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("building commit %s failed:\n%s" % (commit, proc.stderr[-2000:]))
    open(marker, "w").close()
    return pkg


def engine_dir(python, given=None):
    """A folder to put first on PYTHONPATH so that `import refhound` works."""
    given = given or "HEAD"
    if given == "HEAD":
        return _build_commit(python, _git("rev-parse", "--short", "HEAD"))
    if given == "worktree":
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        try:
            import support
            return support.engine_path(python)
        finally:
            sys.path.pop(0)
    return os.path.abspath(given)


def describe(python, path):
    """What was measured: the folder, the commit, whether the working tree's
    engine differs from it, and what `import refhound` found."""
    probe = subprocess.run([python, "-c", "import refhound, refhound._core as c; "
                            "print(refhound.__version__, c.__file__)"],
                           env=dict(os.environ, PYTHONPATH=path), capture_output=True, text=True)
    return {"path": path, "git_head": _git("rev-parse", "--short", "HEAD"),
            "worktree_engine_dirty": bool(_git("status", "--porcelain", "--", "src/core")),
            "import": probe.stdout.strip() or probe.stderr.strip()[-300:]}


def machine_info():
    """Where a benchmark ran: cores, CPU model, kernel, load."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "loadavg": os.getloadavg()}
