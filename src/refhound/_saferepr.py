"""A short repr that never runs user code: only built-in types are shown."""

_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def safe_repr(obj, limit=60):
    tp = type(obj)
    if tp in _PLAIN or obj is Ellipsis or obj is NotImplemented:
        text = repr(obj)
    elif isinstance(obj, type):
        text = "<class '%s.%s'>" % (tp_module(obj), obj.__qualname__)
    elif tp in (tuple, list, dict, set, frozenset):
        text = "<%s of %d items at %#x>" % (tp.__name__, len(obj), id(obj))
    elif tp.__name__ == "module":
        text = "<module %r>" % (obj.__dict__.get("__name__", "?"),)
    elif tp.__name__ in ("function", "builtin_function_or_method"):
        text = "<%s %s>" % (tp.__name__, getattr(obj, "__qualname__", "?"))
    else:
        text = "<%s object at %#x>" % (type_name(tp), id(obj))
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


_TYPE_MODULE = type.__dict__["__module__"]


def tp_module(tp):
    """The type's module, read by type's own getter: the C name of a static
    type (collections.OrderedDict), the dict entry of a class; no user code
    runs (a type's __dict__ may hold a descriptor for its instances instead,
    as function's does)."""
    try:
        mod = _TYPE_MODULE.__get__(tp)
    except AttributeError:
        return "?"
    return mod if isinstance(mod, str) else "?"


def type_name(tp):
    mod = tp_module(tp)
    name = getattr(tp, "__qualname__", tp.__name__)
    return name if mod == "builtins" else "%s.%s" % (mod, name)
