"""The saved inputs of the unit tier (tests/unit/data) and where they live."""
import json
import os

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The checkout the saved inputs name (capture.py rewrites the machine's own
# paths to it): tests map it back to ROOT to read the real sources.
SAVED_CHECKOUT = "/home/dev/refhound"


def local(path):
    """A path in a saved input, in this checkout."""
    if path and path.startswith(SAVED_CHECKOUT + "/"):
        return ROOT + path[len(SAVED_CHECKOUT):]
    return path


def data_path(*parts):
    return os.path.join(DATA, *parts)


def load_result_json(name):
    with open(data_path("results", name + ".json")) as fh:
        return json.load(fh)
