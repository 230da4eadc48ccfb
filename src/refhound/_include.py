"""Where refhound's public C header lives.

The header is shipped inside the package as data:
``refhound/include/refhound/refhound.h``, the one copy in the source tree
(the engine compiles against it too).  Compile an extension with
``-I$(python -m refhound --include)`` and ``#include <refhound/refhound.h>``.
"""
import os

__all__ = ["get_include"]


def get_include():
    """The directory to pass with -I so that <refhound/refhound.h> is found."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")
