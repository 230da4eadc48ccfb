"""The result of a leak check: verdict, rates per call, objects, JSON."""
import json

VERDICTS = ("leak", "error", "clean", "inconclusive")


class Result:
    """What `refhound.check` returns; true when the target is clean.

    Attributes mirror the JSON keys (see `to_dict`): verdict, per_call,
    objects, refcount_growth, sites, iterations, plus the raw samples,
    per-type allocation figures and notes on anything refhound could not do.
    """

    def __init__(self, target, verdict, per_call, objects, refcount_growth,
                 iterations, calls_per_iteration, seconds, samples, types,
                 trends, survivors, debug_refs_per_call=None, notes=(),
                 tracker=None, sites=()):
        self.target = target
        self.verdict = verdict
        self.per_call = per_call
        self.objects = objects
        self.refcount_growth = refcount_growth
        self.sites = list(sites)
        self.iterations = iterations
        self.calls_per_iteration = calls_per_iteration
        self.seconds = seconds
        self.samples = samples
        self.types = types
        self.trends = trends
        self.survivors = survivors
        self.debug_refs_per_call = debug_refs_per_call
        self.notes = list(notes)
        self.tracker = tracker or {}
        self.incomplete = None   # why the check could not conclude, if it could not
        self.valgrind = None     # memcheck figures when run under Valgrind (_valgrind.attach)
        self.patience = None     # {outcome, calls, seconds, budget} when growth was watched longer
        self.native = None       # {symbols, unwinder}: how native frames were read, with sites
        self.screen = None       # what the screen found, when one ran (pytest --refhound)

    def __bool__(self):
        return self.verdict == "clean"

    def __repr__(self):
        pc = self.per_call
        return "<refhound.Result %s %s refs/call=%s objects/call=%s blocks/call=%s>" % (
            self.target, self.verdict, pc["refs"], pc["objects"], pc["blocks"])

    def to_dict(self):
        d = {
            "target": self.target,
            "verdict": self.verdict,
            "iterations": dict(self.iterations),
            "calls_per_iteration": self.calls_per_iteration,
            "seconds": round(self.seconds, 4),
            "per_call": dict(self.per_call),
            "objects": list(self.objects),
            "refcount_growth": [
                {k: v for k, v in g.items() if k != "object"} for g in self.refcount_growth
            ],
            "sites": list(self.sites),
            "types": list(self.types),
            "trends": self.trends,
            "survivors": self.survivors,
            "samples": self.samples,
            "notes": list(self.notes),
            "incomplete": self.incomplete,
            "tracker": self.tracker,
        }
        if self.debug_refs_per_call is not None:
            d["debug"] = {"gettotalrefcount_per_call": self.debug_refs_per_call}
        if self.patience is not None:
            d["patience"] = dict(self.patience)
        if self.screen is not None:
            d["screen"] = dict(self.screen)
        if self.valgrind is not None:
            d["valgrind"] = dict(self.valgrind)
        if self.native is not None:
            d["native"] = dict(self.native)
        return d

    def to_json(self, indent=2):
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d):
        """A Result rebuilt from `to_dict()` (a saved `--json` file): what
        the renderers need, without the objects themselves."""
        result = cls(
            target=d["target"], verdict=d["verdict"], per_call=dict(d["per_call"]),
            objects=list(d["objects"]), refcount_growth=list(d["refcount_growth"]),
            iterations=dict(d["iterations"]), calls_per_iteration=d["calls_per_iteration"],
            seconds=d["seconds"], samples=list(d["samples"]), types=list(d["types"]),
            trends=d["trends"], survivors=d["survivors"],
            debug_refs_per_call=(d.get("debug") or {}).get("gettotalrefcount_per_call"),
            notes=d["notes"], tracker=d["tracker"], sites=d["sites"])
        result.incomplete = d.get("incomplete")
        result.valgrind = d.get("valgrind")
        result.native = d.get("native")
        result.screen = d.get("screen")
        return result

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))
