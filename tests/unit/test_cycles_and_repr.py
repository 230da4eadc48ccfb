"""Cycles hidden from the GC (refhound._cycles) on objects made here, with
the engine's object lookup replaced by a table of the objects the test
vouches for; and the repr that never runs user code (refhound._saferepr)."""
import collections
import struct

import pytest

from refhound import _cycles
from refhound._saferepr import safe_repr, tp_module, type_name

WORD = struct.calcsize("P")


class Node:
    # CPython lays slots out in sorted order, after the header: ref at two
    # words, tail at three
    __slots__ = ("ref", "tail")

    def __init__(self):
        self.ref = None
        self.tail = None


@pytest.fixture
def vouch(monkeypatch):
    """_core.object_at answers for the objects registered here only."""
    known = {}

    class FakeCore:
        @staticmethod
        def object_at(address):
            return known.get(address)

        @staticmethod
        def symbolize(address, is_return):
            return [{"function": "BoxNode_Type"}]

    monkeypatch.setattr(_cycles, "_core", FakeCore)

    def register(*objs):
        for o in objs:
            known[id(o)] = o
    return register


def test_pointers_in_an_objects_own_body(vouch):
    a, b = Node(), Node()
    a.ref, a.tail = b, a
    vouch(a, b, Node)           # the header's type pointer is not a reference to follow
    found = _cycles.pointers_in(a)
    assert [(off, obj) for off, obj in found] == [(2 * WORD, b), (3 * WORD, a)]


def test_unvouched_addresses_are_not_followed(vouch):
    a, b = Node(), Node()
    a.ref = b
    vouch(a)                    # b is not known to the engine
    assert _cycles.pointers_in(a) == []


def test_a_cycle_the_gc_sees_is_not_hidden(vouch):
    a = Node()
    a.ref = a
    vouch(a)
    assert _cycles.hidden_cycle(a) is None


def test_no_cycle_no_diagnosis(vouch):
    a, b = Node(), Node()
    a.ref = b
    vouch(a, b)
    assert _cycles.hidden_cycle(a) is None
    assert _cycles.diagnose({"file": "x.c"}, a) is None
    assert _cycles.diagnose({"file": "x.c"}, None) is None


def test_a_type_without_have_gc_hides_the_cycle(vouch, monkeypatch):
    a = Node()
    a.ref = a
    vouch(a)
    monkeypatch.setattr(_cycles, "HAVE_GC", 0)         # as a static type without the flag
    reason, slot = _cycles.hidden_cycle(a)
    assert slot == "tp_flags"
    assert reason == ("Node holds a reference to itself (offset %d) but its type lacks "
                      "Py_TPFLAGS_HAVE_GC: the cycle is invisible to the garbage collector"
                      % (2 * WORD))


def test_a_traverse_that_misses_the_reference_hides_the_cycle(vouch, monkeypatch):
    a, b = Node(), Node()
    a.ref, b.ref = b, a
    vouch(a, b)
    monkeypatch.setattr(_cycles.gc, "get_referents", lambda obj: [])
    reason, slot = _cycles.hidden_cycle(a)
    assert slot == "tp_traverse"
    assert reason == ("Node holds a reference to a Node that points back (offset %d) that its "
                      "tp_traverse does not visit: the garbage collector cannot break the cycle"
                      % (2 * WORD))


TYPE_C = """\
static PyTypeObject Other_Type = {
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

static PyTypeObject BoxNode_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "m.BoxNode",
    .tp_basicsize = sizeof(BoxObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
};
"""


def test_the_slot_line_in_the_static_type_definition(vouch, tmp_path):
    path = tmp_path / "m.c"
    path.write_text(TYPE_C)
    assert _cycles.type_definition_line(Node, str(path), "tp_flags") == (9, "BoxNode_Type")
    # a slot that is not set: the definition itself
    assert _cycles.type_definition_line(Node, str(path), "tp_traverse") == (5, "BoxNode_Type")
    assert _cycles.type_definition_line(Node, str(tmp_path / "none.c"), "tp_flags") == \
        (None, "BoxNode_Type")
    (tmp_path / "other.c").write_text("int x;\n")
    assert _cycles.type_definition_line(Node, str(tmp_path / "other.c"), "tp_flags") == \
        (None, "BoxNode_Type")


def test_diagnose_names_the_type_definition(vouch, monkeypatch, tmp_path):
    path = tmp_path / "m.c"
    path.write_text(TYPE_C)
    a = Node()
    a.ref = a
    vouch(a)
    monkeypatch.setattr(_cycles, "HAVE_GC", 0)
    site = {"file": str(path), "line": 40, "function": "leaky", "module": "/x/m.so",
            "python": [], "blocks_per_call": 1.0, "bytes_per_call": 24.0,
            "root_blocks_per_call": 1.0}
    cause = _cycles.diagnose(site, a)
    assert (cause["file"], cause["line"], cause["function"]) == (str(path), 9, None)
    assert cause["type_symbol"] == "BoxNode_Type" and cause["kind"] == "gc-blind-cycle"
    assert cause["allocated_at"] == "%s:40 in leaky()" % path
    assert (cause["blocks_per_call"], cause["bytes_per_call"]) == (1.0, 24.0)
    assert cause["reason"].startswith("Node holds a reference to itself")


# ---- safe_repr ----------------------------------------------------------------------------

class Loud:
    def __repr__(self):                  # never called
        raise AssertionError("user code ran")


@pytest.mark.parametrize("obj, text", [
    (None, "None"), (True, "True"), (42, "42"), (1.5, "1.5"), ("abc", "'abc'"),
    (b"x", "b'x'"), (Ellipsis, "Ellipsis"), (NotImplemented, "NotImplemented"),
    (int, "<class 'builtins.int'>"), (Node, "<class '%s.Node'>" % __name__),
    (len, "<builtin_function_or_method len>"),
])
def test_safe_repr_of_plain_objects(obj, text):
    assert safe_repr(obj) == text


def test_safe_repr_never_runs_user_code():
    obj = Loud()
    assert safe_repr(obj) == "<%s.Loud object at %#x>" % (__name__, id(obj))


def test_safe_repr_of_containers_names_their_size_only():
    items = [Loud(), Loud()]
    assert safe_repr(items) == "<list of 2 items at %#x>" % id(items)
    d = {1: Loud()}
    assert safe_repr(d) == "<dict of 1 items at %#x>" % id(d)
    assert safe_repr(pytest) == "<module 'pytest'>"
    assert safe_repr(test_safe_repr_never_runs_user_code) == \
        "<function test_safe_repr_never_runs_user_code>"


def test_safe_repr_is_cut_to_its_limit():
    text = safe_repr("x" * 100)
    assert len(text) == 60 and text.endswith("...")
    assert safe_repr("x" * 100, limit=10) == "'xxxxxx..."


def test_type_names():
    assert type_name(int) == "int"
    assert type_name(Node) == __name__ + ".Node"
    assert type_name(Node.__init__.__class__) == "function"    # not "?.function"
    assert type_name(collections.OrderedDict) == "collections.OrderedDict"
    assert tp_module(int) == "builtins"

    class Odd:
        pass
    Odd.__module__ = 3
    assert tp_module(Odd) == "?"
