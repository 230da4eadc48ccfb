"""Install one exact release of a PyPI package into its own folder, once.

    from fetch import ensure_installed
    path = ensure_installed("ujson", "5.12.0", "/tmp/refhound-realworld")
    sys.path.insert(0, path)   # in a fresh interpreter

The folder is ``root/<package>-<version>``; a marker file written after a
successful ``pip install --no-deps --target`` makes later calls a no-op.
"""

import os
import shutil
import subprocess
import sys

MARKER = ".refhound-installed"


def ensure_installed(package, version, root):
    """Return the folder holding ``package==version``, installing it if needed.

    Raises RuntimeError (with pip's last lines) if pip fails.
    """
    dest = os.path.join(os.path.abspath(root), "%s-%s" % (package, version))
    marker = os.path.join(dest, MARKER)
    if os.path.exists(marker):
        return dest
    if os.path.isdir(dest):  # left over from an interrupted install
        shutil.rmtree(dest)
    os.makedirs(dest)
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--no-deps", "--no-input", "--disable-pip-version-check",
        "--target", dest,
        "%s==%s" % (package, version),
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    if proc.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise RuntimeError("pip install %s==%s failed (exit %d):\n%s"
                           % (package, version, proc.returncode, tail))
    with open(marker, "w") as f:
        f.write("%s==%s\n" % (package, version))
    return dest
