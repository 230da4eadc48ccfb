"""A release's source from PyPI, its extensions built in place, once.

    from pypi import Unavailable, ensure_built
    folder = ensure_built("simplejson", "3.19.3", ROOT + "/build/pypi")

The source distribution is downloaded (pip download --no-binary), unpacked
into root/<package>-<version> and built there with `setup.py build_ext
--inplace`, so the modules' debug information names source files that
exist (a test reads the culprit line from them) and `import <package>`
from that folder gets the built extension.  A marker file makes later
calls a no-op.  Unavailable: PyPI cannot be reached (callers skip, naming
the reason); RuntimeError: the build failed.
"""
import glob
import os
import shutil
import subprocess
import sys
import tarfile

MARKER = ".refhound-built"


class Unavailable(Exception):
    """The release cannot be downloaded (offline, or not on the index)."""


def _tail(text, n=8):
    return "\n".join(text.strip().splitlines()[-n:])


def ensure_built(package, version, root, python=None):
    python = python or sys.executable
    root = os.path.abspath(root)
    dest = os.path.join(root, "%s-%s" % (package, version))
    if os.path.exists(os.path.join(dest, MARKER)):
        return dest
    os.makedirs(root, exist_ok=True)
    pattern = os.path.join(root, "%s-%s.tar.gz" % (package, version))
    if not glob.glob(pattern):
        proc = subprocess.run(
            [python, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--no-input", "--disable-pip-version-check", "-d", root,
             "%s==%s" % (package, version)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        if proc.returncode != 0 or not glob.glob(pattern):
            raise Unavailable("pip download %s==%s failed: %s"
                              % (package, version, _tail(proc.stdout, 2)))
    if os.path.isdir(dest):             # left over from an interrupted build
        shutil.rmtree(dest)
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(glob.glob(pattern)[0]) as tar:
        tar.extractall(root, **safe)
    proc = subprocess.run([python, "setup.py", "build_ext", "--inplace"], cwd=dest,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=900)
    built = glob.glob(os.path.join(dest, "**", "*.so"), recursive=True)
    if proc.returncode != 0 or not built:
        raise RuntimeError("building %s==%s failed (exit %d):\n%s"
                           % (package, version, proc.returncode, _tail(proc.stdout, 15)))
    with open(os.path.join(dest, MARKER), "w") as fh:
        fh.write("%s==%s\n" % (package, version))
    return dest
