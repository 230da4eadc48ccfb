"""The settle corpus (tests/settle) on pyenv's 3.12 and 3.13, where
installed: every settling callable is clean and every twin a leak at its
true rate for that version (immortal objects and interning change some
figures), with default options.  The engine is built against each
interpreter's own headers (tests/support.py)."""
import glob
import os
import sys

import pytest

from support import HERE

sys.path.insert(0, os.path.join(HERE, "e2e"))
from test_settle_corpus import CASES, IDS, check_case  # noqa: E402

PYTHONS = sorted(p for v in ("3.12", "3.13")
                 for p in glob.glob("/root/.pyenv/versions/%s*/bin/python3" % v))


@pytest.mark.skipif(not PYTHONS, reason="no CPython 3.12 or 3.13 installed (pyenv install 3.12 3.13)")
@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: p.split("/")[-3])
@pytest.mark.parametrize("pair, func", CASES, ids=IDS)
def test_settle_corpus_on_other_versions(pair, func, python, tmp_path):
    check_case(python, pair, func, str(tmp_path))
