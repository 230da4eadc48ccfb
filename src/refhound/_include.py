"""Where refhound's public C header lives.

The header is shipped inside the package as data:
``refhound/include/refhound/refhound.h``.  The canonical copy in the source
tree is ``include/refhound/refhound.h`` (the engine compiles against it);
the packaged copy is a byte-identical duplicate, kept so by a test
(tests/test_probes.py).  Compile an extension with
``-I$(python -m refhound --include)`` and ``#include <refhound/refhound.h>``.
"""
import os

__all__ = ["get_include"]


def get_include():
    """The directory to pass with -I so that <refhound/refhound.h> is found."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")
