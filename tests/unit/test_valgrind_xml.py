"""Reading memcheck's XML (refhound._valgrind.xmlparse): saved files of real
runs (tests/unit/data/valgrind) and hand-written ones for the odd shapes."""
import collections
import re

import pytest

import vgxml
from refhound._valgrind import xmlparse
from unitdata import data_path

ZOO = data_path("valgrind", "zoo.xml")
# "320 (+320) bytes in 10 (+10) blocks are definitely lost in loss record 4,540 of 5,798":
# the totals, and in a "changed" search the change since the last one
# and, for a block that holds others, "(56 (+56) direct, 120 (+120) indirect)"
_N = r"([\d,]+)(?: \([+-][\d,]+\))?"
RECORD = re.compile(r"^%s (?:\(%s direct, %s indirect\) )?bytes in %s blocks are "
                    r"(definitely|indirectly) lost in loss record [\d,]+ of [\d,]+$"
                    % (_N, _N, _N, _N))


def events(path):
    return list(xmlparse.read_events(path))


def test_saved_run_reads_as_one_process_in_file_order():
    evs = events(ZOO)
    kinds = collections.Counter(kind for kind, _ in evs)
    assert kinds == {"process": 1, "message": 353, "error": 69, "finished": 1, "counts": 1,
                     "suppcounts": 1}
    assert evs[0][0] == "process"
    order = [kind for kind, _ in evs if kind in ("finished", "counts")]
    assert order == ["finished", "counts"]
    assert [k for k, _ in evs].index("finished") > [k for k, _ in evs].index("error")


def test_saved_run_process_header():
    (proc,) = [p for kind, p in events(ZOO) if kind == "process"]
    assert proc["pid"] == 15776 and proc["ppid"] == 15732
    assert proc["argv"][:3] == ["/root/.pyenv/versions/3.11.7/bin/python3", "-m",
                                "refhound._valgrind.boot"]
    assert proc["argv"][-11:-5] == ["new_object", "nested_list", "rawmem_buffer", "every_tenth",
                                    "gc_cycle_no_gc", "first_calls"]


def test_saved_run_error_kinds_and_leak_records():
    errors = [e for kind, e in events(ZOO) if kind == "error"]
    kinds = collections.Counter(e.kind for e in errors)
    assert kinds == {"Leak_DefinitelyLost": 49, "Leak_IndirectlyLost": 14, "InvalidRead": 3,
                     "InvalidWrite": 1, "InvalidFree": 1, "UninitCondition": 1}
    leaks = [e for e in errors if e.is_leak]
    assert len(leaks) == 63
    assert {e.leak_kind for e in leaks} == {"definite", "indirect"}
    # every leak record carries its figures, parsed as numbers, and its text
    for e in leaks:
        assert isinstance(e.leaked_bytes, int) and isinstance(e.leaked_blocks, int)
        m = RECORD.match(e.what)
        assert m, e.what
        assert (m.group(1), m.group(4)) == (format(e.leaked_bytes, ","),
                                            format(e.leaked_blocks, ",")), e.what
        if m.group(2):
            direct, indirect = (int(m.group(i).replace(",", "")) for i in (2, 3))
            assert direct + indirect == e.leaked_bytes, e.what
    assert not any(e.is_leak for e in errors if e.kind.startswith("Invalid"))


def test_saved_use_after_free_has_its_free_and_alloc_stacks():
    errors = [e for kind, e in events(ZOO) if kind == "error"]
    uaf = [e for e in errors if e.kind == "InvalidRead"
           and any(f.file == "uaf_read.c" for f in e.stack)]
    # two reads of the freed bytes object: its type (8 bytes) and a byte
    assert [x.what for x in uaf] == ["Invalid read of size 8", "Invalid read of size 1"]
    e = uaf[0]
    assert e.what == "Invalid read of size 8"
    assert [f.fn for f in e.stack[:3]] == ["Py_TYPE", "PyBytes_AS_STRING", "leaky"]
    leaky = e.stack[2]
    assert (leaky.file, leaky.line, leaky.path) == (
        "uaf_read.c", 34, "/home/dev/refhound/tests/valgrind_cases/uaf_read.c")
    assert leaky.obj.endswith("/uaf_read.cpython-311-x86_64-linux-gnu.so")
    assert leaky.ip == "0x7B5C2BE"
    texts = [t for t, _ in e.aux]
    assert texts[0] == "Address 0x5621fd8 is 8 bytes inside a block of size 133 free'd"
    assert texts[1].startswith("Block was alloc'd at")
    free_stack = e.aux[0][1]
    assert [f.fn for f in free_stack[:3]] == ["free", "Py_DECREF", "leaky"]
    assert free_stack[2].line == 33
    assert e.unique == "0x8a06e" and e.tid == "1"


def test_saved_error_counts_sum_to_the_errors_seen_in_scopes():
    (counts,) = [c for kind, c in events(ZOO) if kind == "counts"]
    errors = {e.unique: e for kind, e in events(ZOO) if kind == "error" and not e.is_leak}
    assert set(counts) == set(errors)
    assert sum(counts.values()) == 120 + 116 + 60 + 60 + 60


def test_frame_to_dict_and_path():
    f = xmlparse.Frame("0x1", "/x/ext.so", "leaky", "/src/", "ext.c", 7)
    assert f.path == "/src/ext.c"
    assert f.to_dict() == {"function": "leaky", "file": "/src/ext.c", "line": 7,
                           "object": "/x/ext.so", "ip": "0x1"}
    assert xmlparse.Frame("0x1", "/x/ext.so", None, None, "ext.c", None).path == "ext.c"
    assert xmlparse.Frame("0x1", "/x/ext.so", None, None, None, None).path is None


def test_killed_process_is_truncated_and_still_announced(tmp_path):
    # GIVEN a file that stops in the middle of an element (the process was killed)
    text = vgxml.head() + vgxml.marker(ev="boot", allocator="malloc")
    text += vgxml.leak(1, 2, 64, [vgxml.MALLOC, vgxml.USER_FRAME])
    text += "<error>\n  <unique>0x2</unique>\n  <tid>1</tid>\n"
    evs = events(vgxml.write(tmp_path, text))
    # THEN what was complete is read and the end is reported
    assert [k for k, _ in evs] == ["process", "message", "error", "truncated"]
    assert evs[2][1].leaked_blocks == 2
    assert "ends early" in evs[-1][1]


def test_a_file_that_cannot_be_read_is_one_truncated_process(tmp_path):
    evs = events(str(tmp_path / "missing.xml"))
    assert [k for k, _ in evs] == ["process", "truncated"]
    assert evs[0][1] == {"pid": None, "ppid": None, "argv": []}


def test_vfork_child_header_in_the_parent_file_is_dropped(tmp_path):
    text = vgxml.head(pid=100, args=["main.py"])
    text += vgxml.message("before")
    text += vgxml.head(pid=101, ppid=100, exe="/bin/sh", args=["-c", "true"],
                      running=False)
    text += vgxml.message("after")
    text += vgxml.FINISHED + vgxml.END
    evs = events(vgxml.write(tmp_path, text))
    assert [k for k, _ in evs] == ["process", "message", "message", "finished"]
    assert evs[0][1] == {"pid": 100, "ppid": 1, "argv": ["/usr/bin/python3", "main.py"]}
    assert [p for k, p in evs if k == "message"] == ["before", "after"]


def test_failed_exec_child_report_in_the_middle_is_dropped(tmp_path):
    # A vfork child whose exec failed writes its whole final report into the
    # parent's file; the parent goes on writing after it.
    text = vgxml.head(pid=100)
    text += vgxml.head(pid=101, ppid=100, running=False)
    text += vgxml.FINISHED + vgxml.leak(9, 1, 8, [vgxml.MALLOC, vgxml.USER_FRAME]) + vgxml.END
    text += vgxml.message("parent goes on")
    text += vgxml.FINISHED + vgxml.END
    evs = events(vgxml.write(tmp_path, text))
    assert [k for k, _ in evs] == ["process", "message", "finished"]


def test_report_at_the_end_of_the_file_is_the_main_process_own(tmp_path):
    text = vgxml.head(pid=100)
    text += vgxml.head(pid=101, ppid=100, running=False)
    text += vgxml.FINISHED + vgxml.leak(9, 1, 8, [vgxml.MALLOC, vgxml.USER_FRAME]) + vgxml.END
    evs = events(vgxml.write(tmp_path, text))
    assert [k for k, _ in evs] == ["process", "finished", "error"]
    assert evs[2][1].leaked_bytes == 8


def test_error_with_origin_and_suppression(tmp_path):
    raw = "{\n   <insert_a_suppression_name_here>\n   Memcheck:Cond\n   fun:leaky\n}"
    text = vgxml.head()
    text += vgxml.error(5, "UninitCondition", "Conditional jump or move depends on "
                        "uninitialised value(s)", [vgxml.USER_FRAME], suppression=raw)
    text = text.replace("  <suppression>", "  <auxwhat>Uninitialised value was created by a "
                        "heap allocation</auxwhat>\n" + vgxml.stack([vgxml.MALLOC])
                        + "  <suppression>")
    text += vgxml.FINISHED + vgxml.END
    (e,) = [p for k, p in events(vgxml.write(tmp_path, text)) if k == "error"]
    assert e.kind == "UninitCondition" and not e.is_leak and e.leak_kind is None
    assert e.aux == [("Uninitialised value was created by a heap allocation", e.aux[0][1])]
    assert [f.fn for f in e.aux[0][1]] == ["malloc"]
    assert e.suppression == raw
    assert e.stack_key() == ("0x1234",)


def test_auxwhat_pairs_with_the_stack_that_follows_it(tmp_path):
    text = vgxml.head()
    text += vgxml.error(6, "InvalidFree", "Invalid free() / delete / delete[] / realloc()",
                        [vgxml.MALLOC, vgxml.USER_FRAME],
                        aux=[("Address 0x0 is not stack'd, malloc'd or (recently) free'd", []),
                             ("Block was alloc'd at", [vgxml.LIBPYTHON])])
    (e,) = [p for k, p in events(vgxml.write(tmp_path, text)) if k == "error"]
    assert [t for t, _ in e.aux] == [
        "Address 0x0 is not stack'd, malloc'd or (recently) free'd", "Block was alloc'd at"]
    assert e.aux[0][1] == [] and [f.fn for f in e.aux[1][1]] == ["PyList_New"]
    assert [f.fn for f in e.stack] == ["malloc", "make_thing"]


def test_a_second_stack_without_text_is_an_unnamed_aux(tmp_path):
    text = vgxml.head()
    text += vgxml.error(7, "InvalidRead", "Invalid read of size 4", [vgxml.USER_FRAME])
    text = text.replace("</error>", vgxml.stack([vgxml.LIBPYTHON]) + "</error>")
    (e,) = [p for k, p in events(vgxml.write(tmp_path, text)) if k == "error"]
    assert [(t, [f.fn for f in fr]) for t, fr in e.aux] == [("", ["PyList_New"])]


def test_a_line_that_is_not_a_number_is_none(tmp_path):
    bad = dict(vgxml.USER_FRAME, line="??")
    text = vgxml.head() + vgxml.leak(1, 1, 8, [bad]) + vgxml.FINISHED + vgxml.END
    (e,) = [p for k, p in events(vgxml.write(tmp_path, text)) if k == "error"]
    assert e.stack[0].line is None and e.stack[0].fn == "make_thing"


@pytest.mark.parametrize("kind, expected", sorted(xmlparse.LEAK_KINDS.items()))
def test_leak_kinds(tmp_path, kind, expected):
    text = vgxml.head() + vgxml.leak(1, 3, 96, [vgxml.USER_FRAME], kind=kind)
    text += vgxml.FINISHED + vgxml.END
    (e,) = [p for k, p in events(vgxml.write(tmp_path, text)) if k == "error"]
    assert e.is_leak and e.leak_kind == expected
    assert (e.leaked_blocks, e.leaked_bytes) == (3, 96)
