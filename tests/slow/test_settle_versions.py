"""The settle corpus (tests/settle) on pyenv's 3.12 and 3.13, where
installed: the pairs whose figures change with the version (immortal
interned strings on 3.12, immortal small ints from 3.12, a class kept per
call) give a clean
settling callable and a twin that leaks at that version's true rate, with
default options.  The engine is built against each interpreter's own
headers (tests/support.py).  The whole corpus on one of them:
`python3 bench/settle_corpus.py --python ~/.pyenv/versions/3.12.1/bin/python3`.
"""
import os
import sys

import pytest

from support import HERE

sys.path.insert(0, os.path.join(HERE, "e2e"))
sys.path.insert(0, os.path.join(HERE, "slow"))
from test_settle_corpus import cases, check_case  # noqa: E402
from test_versions import PYENV, find_pythons  # noqa: E402

PYTHONS = [p for p in find_pythons() if p.split(os.sep)[-3].startswith(("3.12.", "3.13."))]
# abc_cache: a class kept per call, whose reference rate differs on each
# version (16 a call on 3.12, 19 on 3.13: refhound was once thought one off).
VERSION_PAIRS = ("interning", "deque_maxlen", "abc_cache")


@pytest.mark.skipif(not PYTHONS, reason="no CPython 3.12 or 3.13 under %s/versions (pyenv)"
                    % PYENV)
@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: p.split(os.sep)[-3])
@pytest.mark.parametrize("pair, func", cases(VERSION_PAIRS))
def test_settle_corpus_on_other_versions(pair, func, python, tmp_path):
    check_case(python, pair, func, str(tmp_path))
