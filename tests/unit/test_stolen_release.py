"""_attribution.stolen_release: a use after free whose block a container's
deallocator freed blames the stealing call that gave the container a
borrowed reference, not the container's release; a container freed itself
too early, or a release with no stealing call before it, keeps its line."""
import textwrap

from refhound._attribution import stolen_release

SOURCE = textwrap.dedent("""\
    static PyObject *
    leaky(PyObject *m, PyObject *a)
    {
        PyObject *owner = Py_BuildValue("(n)", 7);
        PyObject *item = PyTuple_GET_ITEM(owner, 0);
        PyObject *list = PyList_New(1);
        PyList_SetItem(list, 0, item);
        Py_DECREF(list);
        Py_DECREF(owner);
        Py_RETURN_NONE;
    }

    static PyObject *
    other(PyObject *m, PyObject *a)
    {
        PyObject *list = PyList_New(1);
        Py_DECREF(list);
        Py_RETURN_NONE;
    }
    """)
RELEASE = 8          # Py_DECREF(list) in leaky
STEAL = 7            # PyList_SetItem(list, 0, item)


def test_an_item_freed_by_the_list_s_deallocator_blames_the_stealing_call(tmp_path):
    path = tmp_path / "case.c"
    path.write_text(SOURCE)
    frees = ["Py_DECREF", "Py_XDECREF", "list_dealloc", "Py_DECREF"]
    line, reason = stolen_release(frees, str(path), RELEASE, "int")
    assert line == STEAL and "PyList_SetItem steals a reference" in reason
    # Two deallocators (the item's own and the list's): the type is not needed.
    assert stolen_release(["long_dealloc"] + frees, str(path), RELEASE)[0] == STEAL


def test_the_container_itself_or_no_stealing_call_keeps_the_release(tmp_path):
    path = tmp_path / "case.c"
    path.write_text(SOURCE)
    frees = ["Py_DECREF", "list_dealloc", "Py_DECREF"]
    assert stolen_release(frees, str(path), RELEASE, "list") is None     # the list itself
    assert stolen_release(["PyObject_Free"], str(path), RELEASE, "int") is None   # no dealloc
    assert stolen_release(frees, str(path), 17, "int") is None        # other(): no steal
    assert stolen_release(frees, None, RELEASE, "int") is None         # no source
