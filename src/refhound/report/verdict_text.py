"""The words of a verdict, written once: the terminal report (terminal.py)
and the HTML report (html.py) both say a result's verdict with these."""

# verdict => what it means, after "LEAK: ", "CLEAN: " ... (None: no check ran)
VERDICT_TEXT = {
    "leak": "grows call after call",
    "error": "a reference count falls call after call (an extra DECREF: this ends in a crash)",
    "clean": "nothing grows",
    "inconclusive": "a trend that is not significant yet: run with more iterations",
    None: "not checked",
}


def summary_text(verdict, incomplete=None, notes=()):
    """The words after the verdict: why the check could not conclude when it
    could not, else what the verdict means."""
    if incomplete:
        return "could not conclude: %s" % incomplete
    if verdict == "inconclusive" and notes:
        return "no conclusion (see the notes)"
    return VERDICT_TEXT.get(verdict, str(verdict))
