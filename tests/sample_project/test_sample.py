"""Tests of the sample extension: clean ones, leaking ones (marked `leaks`,
which is only ground truth for refhound's own tests), and the corner cases of
the pytest plugin's policy (fixtures, markers, pytest's own records)."""
import itertools
import logging
import warnings

import pytest

import sampleext

SENTINEL = object()
KNOWN = object()
_cache = {}
_counter = itertools.count()
_grows = []


def test_encode():
    assert sampleext.encode([1, 2, 3]) == b"\x01\x02\x03"


@pytest.mark.leaks
def test_encode_leaky():
    assert sampleext.encode_leaky([1, 2, 3]) == b"\x01\x02\x03"


def test_tag():
    assert sampleext.tag(SENTINEL) == (SENTINEL, "tag")


@pytest.mark.leaks
def test_tag_leaky():
    assert sampleext.tag_leaky(SENTINEL) == (SENTINEL, "tag")


def test_scratch():
    assert sampleext.scratch(64) == 64 * 0x5a


@pytest.mark.leaks
def test_scratch_leaky():
    assert sampleext.scratch_leaky(64) == 64 * 0x5a


@pytest.mark.parametrize("n", [1, 100, 4096])
def test_scratch_sizes(n):
    assert sampleext.scratch(n) == n * 0x5a


def test_uses_leaky_fixture(leaky_resource):
    # The fixture leaks a handle per setup; this test does not leak.
    assert leaky_resource.read() == 0


@pytest.mark.refhound(fixtures="fresh")
def test_uses_leaky_fixture_fresh(leaky_resource):
    # Fixtures re-created for every call: the fixture's leak is measured,
    # then told apart from the test's.
    assert leaky_resource.read() == 0


@pytest.mark.refhound(fixtures="fresh")
def test_appends_to_fresh_fixture(fresh_list):
    fresh_list.append(sampleext.encode([7]))
    assert len(fresh_list) == 1


def test_cache_settles():
    # A bounded cache: fills during the first calls, then stays.
    key = next(_counter) % 50
    _cache[key] = sampleext.encode([key])


@pytest.mark.leaks
def test_grows_global_list():
    # A leak in pure Python: the list keeps every result.
    _grows.append(sampleext.encode([1, 2]))


def test_monkeypatch(monkeypatch):
    monkeypatch.setattr(sampleext, "patched", 1, raising=False)
    monkeypatch.setenv("SAMPLE_VAR", "1")
    assert sampleext.patched == 1


def test_output(capsys):
    print("encoded", sampleext.encode([65]))
    assert "encoded" in capsys.readouterr().out


def test_prints():
    print("a line of output on every call")


def test_logs(caplog):
    logging.getLogger("sample").warning("encoded %r", sampleext.encode([66]))
    assert "encoded" in caplog.text


def test_warns():
    with pytest.warns(UserWarning):
        warnings.warn("careful", UserWarning)
    warnings.warn("not caught by the test", DeprecationWarning)


@pytest.mark.refhound(allow={"refs": 1})
def test_known_issue_allowed():
    sampleext.tag_leaky(KNOWN)


@pytest.mark.leaks
@pytest.mark.refhound(allow={"refs": 1})
def test_known_issue_got_worse():
    sampleext.tag_leaky(KNOWN)
    sampleext.tag_leaky(KNOWN)


@pytest.mark.refhound(skip="known leak, tracked elsewhere")
def test_skipped_by_marker():
    sampleext.encode_leaky([1])


@pytest.mark.refhound(metrics=["fds"])
def test_leak_outside_watched_metrics():
    sampleext.encode_leaky([2])


class TestCodec:
    def test_roundtrip(self):
        assert list(sampleext.encode([1, 2, 250])) == [1, 2, 250]

    @pytest.mark.leaks
    def test_method_leaky(self):
        # 30 items: a tuple too large for CPython's tuple free lists, so its
        # block is always fresh (and attributed to the line that made it).
        assert sampleext.encode_leaky(list(range(30))) == bytes(range(30))
