"""The rules of a verdict, written once: every front end asks this module.

The engine (refhound._core) measures: samples per iteration and the pure
statistics (Mann-Kendall with ties, Theil-Sen slope: `_core.trend`).  This
module judges:

  classify()   one metric over a window of samples: flat, noise, unclear,
               growing or falling;
  Decider      after each measured iteration: leak, error, clean,
               inconclusive or "continue" (streaks, minimum and maximum
               number of iterations);
  patience     before "leak" or "error", and instead of "inconclusive", the
               growth must persist (or settle) over ten times the calls it was
               seen in (slow-filling caches, aliasing of periodic ones);
  judge()      the outcome of one pytest test under its settings (watched
               metrics, allowances).

No rule lives anywhere else: the thresholds below are the only ones.
Nothing here keeps per-iteration Python state that grows (a check counts
the objects that survive an iteration, its own included).
"""

# The metrics whose growth makes a leak (the others are shown only).
# native_blocks/native_bytes: the blocks of malloc & co. tracked in extensions
# (-1 when native tracking is off); heap_bytes: the C library's whole heap;
# rss_bytes: resident memory, for what no allocator sees (a library's mmap).
VERDICT_METRICS = ("refs", "objects", "blocks", "bytes", "native_blocks", "native_bytes",
                   "heap_bytes", "rss_bytes", "fds", "threads")
# Metrics that may be missing from a sample (-1: not available here).
OPTIONAL_METRICS = frozenset(("native_blocks", "native_bytes", "heap_bytes", "rss_bytes",
                              "uss_bytes", "fds", "threads", "debug_refs", "arenas", "pools",
                              "pymalloc_blocks"))
# The heap and RSS figures are too noisy to hold a check back or to call it flat.
NOISY_METRICS = frozenset(("heap_bytes", "rss_bytes"))
# Native memory: what grows there alone, below one byte per call, is not a
# test's leak (judge); the heap grows with the tracked blocks.
NATIVE_METRICS = frozenset(("native_blocks", "native_bytes", "heap_bytes"))
# Resident memory grows in pages and creeps (a page of the samples touched,
# a stack deeper): growth below this over the window is never "growing".
RSS_MIN_GROWTH = 256 * 1024

MIN_WINDOW = 8          # samples in the recent window, at least
LEAK_STREAK = 3         # growing decisions in a row before "leak"
ERROR_STREAK = 2        # falling decisions in a row before "error"
UNCLEAR_P = 0.05        # a trend leaning one way, not significant yet
LEANING_P = 0.1         # any hint of net change: forbids an early "clean"
RECENT_PACE = 0.25      # the last third must still move at this share of the pace
FLAT, NOISE, UNCLEAR, GROWING, FALLING = "flat", "noise", "unclear", "growing", "falling"

# Patience: before "leak" or "error", and instead of "inconclusive", the
# growth must persist (or settle) over a horizon of ten times the calls it
# was seen in; the horizon grows geometrically within the time budget.
PATIENCE_HORIZON = 10       # times the calls already seen
PATIENCE_MIN_CALLS = 100_000    # and at least this many: what fills over fewer is a cache,
PATIENCE_MIN_SECONDS = 1.0      # as far as they fit in this much time (slow calls: fewer)
PATIENCE_OVERRUN = 1.5          # a stage stops early past this share of the budget
PATIENCE_ITERATIONS = 4     # iterations per stage (plus a baseline)
PERSISTS = 0.5              # rate over the horizon / rate first seen: the growth persists
SETTLED = 0.1               # below this share: the growth has settled
OUTGROWN = 2.0              # a steady pace that added this many times the growth
                            # seen before has not settled (a leak under a fill)

# Refcount diagnosis: an object whose count moves less than this per call
# is not reported.
MIN_REFS_PER_CALL = 0.01


def stats(series):
    """Pure statistics of a series: slope (Theil-Sen, per sample) and the
    one-sided Mann-Kendall p-values."""
    from . import _core
    t = _core.trend(series)
    return t["slope"], t["p_up"], t["p_down"]


class Trend:
    """The classification of one metric over a window."""

    __slots__ = ("trend", "slope", "p_up", "p_down", "growth", "window")

    def __init__(self, trend=FLAT, slope=0.0, p_up=1.0, p_down=1.0, growth=0.0, window=0):
        # Each figure a float of its own (+ 0.0 makes a new one): the
        # decider keeps the trends between samples, and a flat metric's
        # shared constants against a moving one's new floats would make the
        # check's own objects rise and fall by up to 40 with the data.
        self.trend = trend
        self.slope = float(slope) + 0.0
        self.p_up = float(p_up) + 0.0
        self.p_down = float(p_down) + 0.0
        self.growth = float(growth) + 0.0       # last - first over the window
        self.window = window

    @property
    def leaning(self):
        return ((self.p_up < LEANING_P and self.growth > 0) or
                (self.p_down < LEANING_P and self.growth < 0))

    def to_dict(self):
        return {"trend": self.trend, "slope": self.slope, "p_up": self.p_up,
                "p_down": self.p_down, "window": self.window}


def classify(x, alpha):
    """Is the series growing, falling, or settled?

    Growing: the Mann-Kendall trend is significant at `alpha`, the median
    slope is positive AND the last third of the window still grows at a
    quarter of that pace or more: the last condition tells a leak from a
    cache that filled up early in the window.  Falling is the mirror."""
    n = len(x)
    if n < 2:
        return Trend(window=n)
    growth = x[-1] - x[0]
    if all(v == x[0] for v in x):
        return Trend(window=n)
    slope, p_up, p_down = stats(x)
    third = max(n // 3, 1)
    recent = x[-1] - x[-1 - third]
    pace = RECENT_PACE * slope * third
    if p_up < alpha and slope > 0 and recent > 0 and recent >= pace:
        trend = GROWING
    elif p_down < alpha and slope < 0 and recent < 0 and recent <= pace:
        trend = FALLING
    elif (p_up < UNCLEAR_P and recent > 0) or (p_down < UNCLEAR_P and recent < 0):
        trend = UNCLEAR
    else:
        trend = NOISE
    return Trend(trend, slope, p_up, p_down, growth, n)


def measured_base(warmup_samples):
    """Index of the baseline sample: the last warm-up sample."""
    return warmup_samples - 1 if warmup_samples > 0 else 0


def window_of(nsamples, warmup_samples):
    """(first index, measured iterations) of the recent window: the last two
    thirds of the measured samples, at least MIN_WINDOW."""
    base = measured_base(warmup_samples)
    measured = nsamples - 1 - base
    npoints = measured + 1
    window = (2 * npoints + 2) // 3
    if window < MIN_WINDOW:
        window = min(npoints, MIN_WINDOW)
    return nsamples - window, measured


def classify_window(series, alpha, metric):
    """classify() over a window, a metric with a missing value counting as flat
    (and resident memory that moved less than RSS_MIN_GROWTH as noise)."""
    if metric in OPTIONAL_METRICS and any(v < 0 for v in series):
        return Trend(p_up=0.0, p_down=0.0, window=len(series))
    t = classify(series, alpha)
    if metric == "rss_bytes" and t.trend in (GROWING, FALLING, UNCLEAR) and \
            abs(t.growth) < RSS_MIN_GROWTH:
        t.trend = NOISE
    return t


MEMORY_METRICS = ("blocks", "bytes", "native_blocks", "native_bytes", "heap_bytes")


def rss_unexplained(trends):
    """Resident memory grows while no allocator's figure does: memory mapped
    outside malloc (a library's mmap), which no allocator hook sees."""
    rss = trends.get("rss_bytes")
    if rss is None or rss.trend != GROWING:
        return False
    return not any(trends[m].trend in (GROWING, UNCLEAR) for m in MEMORY_METRICS if m in trends)


class Decider:
    """After each measured iteration: what the samples say so far.

    decide(session) -> (verdict, stop), verdict one of "leak", "error",
    "clean", "inconclusive", "continue"."""

    def __init__(self, options, metrics=VERDICT_METRICS, max_samples=None):
        self.alpha = options.alpha
        self.min_measured = options.min_iterations
        self.max_measured = options.iterations
        self.max_samples = max_samples
        self.metrics = metrics
        self.leak_streak = 0
        self.error_streak = 0
        self.trends = {}            # the last decision's classification per metric

    def _classify(self, session, start):
        return {m: classify_window(session.series(m, start), self.alpha, m)
                for m in self.metrics}

    def decide(self, session):
        start, measured = window_of(session.nsamples, session.warmup_samples)
        return self.decide_trends(self._classify(session, start), measured, session.nsamples)

    def prime(self, session):
        """During the warm-up: the trends of the samples so far, kept as
        decide() keeps them, with no decision and no streak.  The objects a
        decision keeps (the trends and their figures) then exist before the
        baseline sample, and the first measured iterations do not count
        them as growth."""
        self.trends = self._classify(session, 0)

    def decide_trends(self, trends, measured, nsamples=0):
        self.trends = trends
        growing = any(t.trend == GROWING for t in trends.values())
        # Memory that shrinks is no leak: only the reference count's fall
        # (an over-release) holds a clean verdict back on the way down.
        unclear = any(t.trend == UNCLEAR and (m == "refs" or t.growth > 0)
                      for m, t in trends.items())
        leaning = any(t.leaning and (m == "refs" or t.growth > 0)
                      for m, t in trends.items() if m not in NOISY_METRICS)
        flat = all(t.trend == FLAT for m, t in trends.items() if m not in NOISY_METRICS)
        falling = "refs" in trends and trends["refs"].trend == FALLING
        self.leak_streak = self.leak_streak + 1 if growing else 0
        self.error_streak = self.error_streak + 1 if falling else 0
        if measured >= self.min_measured:
            if falling and self.error_streak >= ERROR_STREAK:
                return "error", True
            # A falling reference count holds "leak" back: an over-release
            # that also stirs the heap is an error, found one decision later.
            if growing and not falling and self.leak_streak >= LEAK_STREAK:
                return "leak", True
            if not (growing or falling or unclear) and flat:
                return "clean", True
            if not (growing or falling or unclear or leaning) and \
                    measured >= 2 * self.min_measured:
                return "clean", True
        full = self.max_samples is not None and nsamples >= self.max_samples - 1
        if measured >= self.max_measured or full:
            if falling:
                return "error", True
            if growing:
                return "leak", True
            if unclear:
                return "inconclusive", True
            return "clean", True
        return "continue", False


# A body checked at more calls per iteration than this first gets three
# short iterations (a tenth of it, then it twice) before its warm-up.
PROBE_CALLS = 100


def refs_fell(refs_delta, calls):
    """One iteration's drop of the total reference count that means an extra
    DECREF per call (re-check with one call per iteration, so the object is
    not freed under the check)."""
    return calls > 1 and refs_delta <= -(calls // 2)


def still_falls(refs_deltas, calls):
    """After the restart at one call per iteration for an over-release: the
    reference count still falls by about one per call in three iterations
    in four of the window, and over the window as a whole.  Then the check
    is an error whatever the other metrics did (at one call per iteration
    the check's own bookkeeping moves the objects and blocks by a few,
    enough to look like growth)."""
    if len(refs_deltas) < 4:
        return False
    falls = sum(1 for d in refs_deltas if d <= -0.5 * calls)
    return 4 * falls >= 3 * len(refs_deltas) and sum(refs_deltas) <= -0.5 * calls * len(refs_deltas)


def all_trends(samples, warmup_samples, alpha):
    """The classification of every metric over the final window (for the result)."""
    if not samples:
        return {}
    start, _ = window_of(len(samples), warmup_samples)
    out = {}
    for metric in samples[0]:
        if metric in ("t", "epoch"):
            continue
        series = [s[metric] for s in samples[start:]]
        out[metric] = classify_window(series, alpha, metric).to_dict()
    return out


# ---------------------------------------------------------------------------
# Patience


def references_move(trends):
    """Can a refcount diagnosis find anything?  Not when the sum of every
    reference count stayed flat: no object gains or loses references call
    after call (a leak of blocks alone: a buffer, a C library's record)."""
    t = trends.get("refs")
    return t is None or t.trend != FLAT


def memory_moves(trends):
    """Can the attribution find surviving blocks?  Not when every figure of
    memory stayed flat or within its noise: a leak of references alone (an
    extra Py_INCREF on an object that exists), whose lines the refcount
    watch names."""
    return any(trends[m].trend not in (FLAT, NOISE) for m in MEMORY_METRICS if m in trends)


def blocks_move(trends):
    """Can the search for lost blocks find anything?  Not when the blocks'
    counts (Python's and the extensions' native ones) stayed flat or within
    their noise: a leak of references alone."""
    return any(trends[m].trend not in (FLAT, NOISE) for m in ("blocks", "native_blocks")
               if m in trends)


def followed_metrics(trends, verdict):
    """{metric: +1 or -1}: the metrics to watch longer, with the direction to
    watch for.  For an error, the falling reference count; otherwise every
    verdict metric that grew or leaned up (a leak every tenth call shows in
    objects as "unclear" while a noisy metric made the verdict)."""
    out = {}
    for m, t in trends.items():
        if verdict == "error":
            if m == "refs" and t.trend == FALLING:
                out[m] = -1
            continue
        if t.trend == GROWING or (m not in NOISY_METRICS and t.trend in (UNCLEAR, NOISE)
                                  and (t.growth > 0 or t.slope > 0)):
            out[m] = 1
        elif verdict == "inconclusive" and t.trend in (UNCLEAR, FALLING) and m == "refs":
            out[m] = -1
    return out


def rates_since(session, start, calls, metrics, end=None):
    """{metric: per-call rate} over the samples [start, end) (Theil-Sen slope
    per sample / calls per iteration); metrics with a missing value are left out."""
    out = {}
    for m in metrics:
        series = session.series(m, start)
        if end is not None:
            series = series[:end - start]
        if len(series) >= 2 and min(series) >= 0:
            out[m] = stats(series)[0] / calls
    return out


def mean_rates(session, start, end, calls, metrics):
    """{metric: per-call rate} from the first to the last of the samples
    [start, end): the pace of sparse events (a leak every tenth call, one
    iteration in ten), where the median slope is 0."""
    out = {}
    for m in metrics:
        series = session.series(m, start)[:end - start]
        if len(series) >= 2 and min(series) >= 0:
            out[m] = (series[-1] - series[0]) / ((len(series) - 1) * calls)
    return out


def stage_steps(session, start, calls, metrics):
    """{metric: [per-call change of each iteration]} over the samples from
    `start` (a patience stage)."""
    out = {}
    for m in metrics:
        series = session.series(m, start)
        if len(series) >= 2 and min(series) >= 0:
            out[m] = [(b - a) / calls for a, b in zip(series, series[1:])]
    return out


BLOCK_METRICS = frozenset(("blocks", "bytes"))
SURVIVORS_KEPT = 0.5        # a leak keeps this share of the blocks born while it was seen


def survivors_kept(counts, blocks_per_iteration):
    """Do the blocks born in the measured iterations survive?  counts: live
    blocks per birth epoch of those iterations, now; blocks_per_iteration:
    the growth they showed.  A leak keeps its blocks; a cache that turns
    over (evicts its oldest entries) does not, however its total grows."""
    if not counts or blocks_per_iteration <= 0:
        return True
    ordered = sorted(counts)
    median = ordered[len(ordered) // 2]
    return median >= SURVIVORS_KEPT * blocks_per_iteration


LOST_SHARE = 0.8           # of the growth, lost for good, to need no patience
LOST_MIN_PER_ITERATION = 2  # and at least this many blocks an iteration
# The screen's proof (screen_lost) asks half: its blocks also outlived the
# full collections of two rounds, with nothing else moving, and its search
# follows one round of filling only.  Measured on a PyMem block a call in a
# pytest process (two such tests, 24 runs, half of them with two CPU hogs):
# before the search left the allocators' free memory out (freemem.c,
# poolfree.c), stale words hid whole epochs (0 of 25 lost in one, the second
# test proven in 1 run of 3); since, 23 to 25 of 25 lost, 48 proofs of 48.
SCREEN_LOST_SHARE = 0.5


def growth_lost(lost_per_epoch, blocks_per_iteration, share=None):
    """Are the blocks a leak's growth is made of lost for good?  lost_per_epoch:
    the blocks of each measured iteration that nothing in the process points
    to any more (lost.c); blocks_per_iteration: the growth measured.  The
    first and last iterations are left out (the last call's blocks may still
    be named by stale words in memory freed to the C library's per-thread
    cache, which is not filled).  No cache can give back a block it holds no
    pointer to: a growth made of such blocks (some in every iteration,
    LOST_SHARE of it and LOST_MIN_PER_ITERATION blocks in the median one)
    needs no patience.  The count found is a floor: a stale word in live
    memory (or in free memory the search cannot walk: lost.c) names a lost
    block now and then; measured in a pytest process, msgpack's first leak
    of 9 blocks a call, at one call an iteration, came out 8 to 10 of 11
    lost.  A growth of one block an iteration is left to
    patience, which changes the calls an iteration holds: a block the
    tracker missed the release of, once an iteration (measured: a clean
    twin on the debug build), is no call's.  The price of the share: a leak
    beside a cache that fills (lost, and kept) is reported at the rate of
    both."""
    middle = list(lost_per_epoch)[1:-1]
    if len(middle) < 2 or blocks_per_iteration < LOST_MIN_PER_ITERATION:
        return False
    ordered = sorted(middle)
    median = ordered[len(ordered) // 2]
    return ordered[0] > 0 and median >= LOST_MIN_PER_ITERATION and \
        median >= (LOST_SHARE if share is None else share) * blocks_per_iteration


# A reference-only leak (bare_references) is called without patience when,
# over one stage of calls, the objects the diagnosis named gained at least
# UNHELD_MIN_REFS references and half of those the diagnosis' rate
# promised, while the words of the process that hold their addresses grew
# by at most UNHELD_WORDS_SHARE of them (lost.c's count).  Measured in a
# process: a list appending None a call adds a word a reference; an extra
# Py_INCREF of None 0 +- 25 words over 1,000 calls (stale words in memory
# freed meanwhile).
UNHELD_MIN_REFS = 200
UNHELD_WORDS_SHARE = 0.25
UNHELD_STAGE_SHARE = 0.2     # of the patience budget, the stage may take at most


def unheld_calls(refs_per_call, seconds_per_call, budget):
    """The calls of the stage that asks whether references are held, or
    None when they would take over UNHELD_STAGE_SHARE of the budget."""
    import math
    if refs_per_call <= 0:
        return None
    calls = math.ceil(2 * UNHELD_MIN_REFS / refs_per_call)
    if calls * seconds_per_call > UNHELD_STAGE_SHARE * budget:
        return None
    return calls


def references_unheld(refs_gained, words_gained, refs_per_call, calls):
    """Did the objects gain references that no word of the process holds?
    refs_gained, words_gained: over `calls` calls, in all; refs_per_call:
    the diagnosis' rate.  A cache holds every reference it takes in a word
    (an entry, a slot, a list's item); an unbalanced Py_INCREF in none."""
    return refs_gained >= max(UNHELD_MIN_REFS, 0.5 * refs_per_call * calls) and \
        words_gained <= UNHELD_WORDS_SHARE * refs_gained


def others_settled(trends, followed):
    """Do the verdict metrics the growth is not made of stay put (flat or
    noise; the noisy metrics are not asked)?  A leak taken without patience is reported with
    the rates of its measured window: a metric still leaning there (a
    reference count drifting down while the interpreter settles, 3.13) would
    be reported at that drift, which a longer watch corrects."""
    return not any(m in trends and m not in followed and m not in NOISY_METRICS and
                   trends[m].trend in (UNCLEAR, GROWING, FALLING)
                   for m in VERDICT_METRICS)


def new_pace(metric, sign, before, after, steps, reach):
    """The stage's growth of a metric relative to all the growth seen before
    it, when the metric moved its way in every iteration of the stage at a
    steady pace (each iteration at least half the stage's rate); else 0.

    reach: the calls of the stage over the calls seen before it.  A cache
    that was still filling slows down within the stage; one emptied
    periodically adds no more than its size whatever the horizon; a leak
    that a fill hid keeps its own pace and adds in proportion to the calls."""
    r1 = sign * after.get(metric, 0.0)
    deltas = steps.get(metric) or []
    if metric in NOISY_METRICS or r1 <= 0.0 or len(deltas) < PATIENCE_ITERATIONS or \
            any(sign * d < PERSISTS * r1 for d in deltas):
        return 0.0
    r0 = abs(before.get(metric, 0.0))
    return float("inf") if r0 == 0.0 else r1 * reach / r0


def patience_outcome(followed, before, after, steps, survivors_ok=True,
                     reach=PATIENCE_HORIZON):
    """"persists", "settled" or "slowing": a patience stage against the rates
    first seen.  after: {metric: per-call rate over the stage}; steps:
    {metric: per-call change of each of its iterations}; reach: the calls
    of the stage over the calls the growth was seen in before it.

    Persists when a followed metric still moves its way at half the first
    rate or more, over the stage and in its last iteration (a metric with no
    pace seen before: in every iteration of the stage); or when it moves at
    a steady pace in every iteration of the stage, however much slower than
    first seen, adding up to five times the growth seen before (what half
    the first rate adds over ten times the calls): the first pace included
    a fill, the leak under it goes on.  Settled when every one has stopped
    by the end (its last iteration moves less than a tenth of the first
    rate, or turned back) and none kept a steady pace that added twice the
    growth seen before; otherwise it is slowing, and a longer horizon
    decides (against the steady pace: rebased()).

    survivors_ok: whether the blocks born while the growth was first seen
    are still alive (survivors_kept); growth of blocks or bytes whose old
    survivors died is turnover, and persists only through another metric."""
    settled = True
    for m, sign in followed.items():
        deltas = [sign * d for d in steps.get(m) or [0.0]]
        r0 = abs(before.get(m, 0.0))
        r1 = sign * after.get(m, 0.0)
        end = deltas[-1]
        turnover = m in BLOCK_METRICS and sign > 0 and not survivors_ok
        pace = 0.0 if turnover else new_pace(m, sign, before, after, steps, reach)
        if r0 > 0.0:
            if r1 >= PERSISTS * r0 and end >= PERSISTS * r0 and not turnover:
                return "persists"
            if pace >= PERSISTS * PATIENCE_HORIZON:
                return "persists"
            if end >= SETTLED * r0 or pace >= OUTGROWN:
                settled = False
        else:
            if m not in NOISY_METRICS and len(deltas) >= PATIENCE_ITERATIONS and \
                    all(d > 0 for d in deltas) and not turnover:
                return "persists"
            if end > 0:
                settled = False
    return "settled" if settled else "slowing"


def rebased(followed, before, after, steps, reach):
    """The rates the next stage is held against after a slowing one: a
    metric that kept a steady pace over the stage, adding twice the growth
    seen before it, is held against that pace (a leak under a fill keeps
    it; a cache filling ever slower, or emptied periodically, does not)."""
    out = dict(before)
    for m, sign in followed.items():
        if before.get(m) and new_pace(m, sign, before, after, steps, reach) >= OUTGROWN:
            out[m] = after[m]
    return out


def bare_references(followed, verdict):
    """A leak seen in the reference count alone: references that grow with
    no object, block or byte of storage growing to hold them (an extra
    Py_INCREF).  A cache that fills keeps its references somewhere: new
    entries, new keys, resized tables."""
    return verdict == "leak" and dict(followed) == {"refs": 1}


# A patience stage whose calls ran at under this share of the cost it was
# planned from is planned again at their pace (patience_replan).
PATIENCE_REPLAN = 0.5


def patience_replan(planned, pace, horizon):
    """Plan a stage again?  planned: the seconds per call the stage was
    planned from; pace: those its calls took (None: unknown); horizon: the
    calls it watched.  When the calls ran at under PATIENCE_REPLAN of the
    planned cost and the stage fell short of the least horizon at their pace
    (PATIENCE_MIN_CALLS, or PATIENCE_MIN_SECONDS of them)."""
    if pace is None or pace <= 0.0 or planned <= 0.0 or pace >= PATIENCE_REPLAN * planned:
        return False
    return horizon < min(PATIENCE_MIN_CALLS, PATIENCE_MIN_SECONDS / pace) * 0.9


def patience_stage(seen, horizon_cap, seconds_per_call, overhead, remaining, floor=True):
    """(calls per iteration, horizon) of the next stage, or None when the time
    left cannot cover ten times the calls already seen.

    The horizon is ten times the calls seen, and at least PATIENCE_MIN_CALLS
    as far as they take no more than PATIENCE_MIN_SECONDS (what stops
    growing within that many calls is taken for a cache), as far as the time
    left allows.  floor=False leaves that least horizon out: bare references
    (bare_references) fill no cache.

    seen: calls the growth has been watched over; horizon_cap: the most calls
    the stage may run (None: no cap; an over-release may free its object);
    seconds_per_call, overhead: the cost of a call and of an iteration's
    sampling; remaining: seconds left in the budget."""
    per_call = max(seconds_per_call, 1e-9)
    least = min(PATIENCE_MIN_CALLS, PATIENCE_MIN_SECONDS / per_call) if floor else 0
    horizon = max(PATIENCE_HORIZON * seen, least)
    k = PATIENCE_ITERATIONS
    if horizon_cap is not None:
        # The stage calls k + 1 iterations (the first is its baseline): the
        # cap holds for all of them.
        horizon_cap = horizon_cap * k // (k + 1)
        horizon = min(horizon, horizon_cap)
    affordable = (remaining / (k + 1) - overhead) / per_call * k
    horizon = min(horizon, affordable)
    if horizon < PATIENCE_HORIZON * seen and (horizon_cap is None or horizon < horizon_cap):
        return None
    calls = max(1, int(horizon // k))
    return calls, calls * k


# ---------------------------------------------------------------------------
# One pytest test under its settings

# Native memory (the heap in use, the tracked native blocks) of a long
# pytest process drifts by a few hundred bytes now and then.  Growth there
# alone, below one byte per call (a leaked malloc chunk is at least 32
# bytes), is drift, not a leak of the test.
NATIVE_DRIFT = 1.0

# The heap figure (glibc's bytes in use, without the chunks parked in the
# main thread's tcache: procstat.c) also holds what the interpreter and the
# C library allocate with malloc directly: neither PEP 445 nor the native
# wrappers see it.  Growth there alone, below one chunk per call (the
# smallest chunk is 32 bytes) while every tracked figure stays flat, is not
# a per-call leak of the code checked: a re-import of markupsafe's
# extension grows it by 14 bytes per call, steadily, inside the
# interpreter.  It is reported as drift, with a note, without patience.
HEAP_CHUNK_BYTES = 32
RSS_PAGE_BYTES = 4096


def heap_only_drift(session, followed, start, calls):
    """The heap's growth per call over the samples from `start` (at `calls`
    calls per sample) when it alone is followed (resident memory beside it
    only when that grew by less than a page per call: the heap's drift
    touches pages too), the extensions' native blocks are tracked and flat,
    and it is below HEAP_CHUNK_BYTES; else None."""
    if set(followed) - {"rss_bytes"} != {"heap_bytes"} or calls < 1:
        return None
    if "rss_bytes" in followed:
        rss = session.series("rss_bytes", start)
        if len(rss) < 2 or min(rss) < 0 or \
                (rss[-1] - rss[0]) / (calls * (len(rss) - 1)) >= RSS_PAGE_BYTES:
            return None
    native = session.series("native_blocks", start)
    heap = session.series("heap_bytes", start)
    if len(heap) < 2 or min(heap) < 0 or not native or min(native) < 0 \
            or max(native) != min(native):
        return None
    per_call = (heap[-1] - heap[0]) / (calls * (len(heap) - 1))
    return per_call if 0 <= per_call < HEAP_CHUNK_BYTES else None


FAILING = ("leak", "error")


def rate(result, metric):
    value = result.per_call.get(metric)
    if value is None and metric == "threads":
        return 0.0
    return value or 0.0


def growing_metrics(result, metrics=None):
    """Verdict metrics classified as growing in the final window, whose
    measured rate over the whole measurement is above zero (a trend in the
    last samples that adds up to nothing per call is not blamed on a test)."""
    out = []
    for m in metrics or VERDICT_METRICS:
        trend = result.trends.get(m) or {}
        if trend.get("trend") == GROWING and (m == "threads" or rate(result, m) > 0):
            out.append(m)
    return out


def judge(result, metrics=None, allow=None, strict=False):
    """(outcome, reason) of a Result for a test that watches `metrics` (None:
    all) and tolerates `allow` {metric: growth per call}."""
    allow = allow or {}
    verdict = result.verdict
    if verdict == "error":
        if metrics and "refs" not in metrics:
            return "ignored", ("the reference count falls, but 'refs' is not among the "
                               "watched metrics")
        return "error", "the reference count falls call after call (an extra DECREF)"
    if verdict == "inconclusive":
        return ("leak" if strict else "inconclusive",
                result.incomplete or "a trend that is not significant yet")
    if verdict != "leak":
        return "clean", ""
    growing = growing_metrics(result, metrics)
    native = max(rate(result, "native_bytes"), rate(result, "heap_bytes"))
    if growing and set(growing) <= NATIVE_METRICS and native < NATIVE_DRIFT:
        return "clean", ("only native memory drifted (%+.3g bytes per call, below one byte; "
                         "no Python block, object or reference grew)" % native)
    if not growing:
        if metrics and growing_metrics(result):
            return "ignored", ("grows only in metrics that are not watched (%s)"
                               % ", ".join(growing_metrics(result)))
        return "clean", ("the engine saw a trend (%s) that adds up to no growth per call"
                         % ", ".join(m for m in VERDICT_METRICS
                                     if (result.trends.get(m) or {}).get("trend") == GROWING))
    # Within an allowance for the counted figures, the heap and resident
    # memory that grow with them are too.
    counted = counted_first(growing)
    over = [m for m in counted if rate(result, m) > allow.get(m, -1.0) * 1.05 + 0.05]
    if not over:
        return "allowed", "within the allowance (%s)" % ", ".join(
            "%s %+g/call <= %g" % (m, rate(result, m), allow[m]) for m in counted)
    return "leak", "grows call after call: %s" % ", ".join(
        "%s %+.4g/call" % (m, rate(result, m)) for m in over)


def counted_first(metrics):
    """The counted figures among `metrics` (the noisy ones, the heap and
    resident memory, follow them), or all of them when none is counted."""
    return [m for m in metrics if m not in NOISY_METRICS] or list(metrics)


def explained_by_fixture(result, fixture_result):
    """True when every metric the test grows is grown as fast by the fixture
    cycle alone (fixtures="fresh"); an inconclusive test run is explained
    when the fixture cycle leaks and grows as fast whatever the run leaned to."""
    if fixture_result is None or fixture_result.verdict != "leak":
        return False
    if result.verdict == "inconclusive":
        # Nothing significant yet: what the test may grow is what trends up
        # or is unclear; with none of it, the fixture's own leak explains
        # the unsettled run.
        growing = [m for m in VERDICT_METRICS
                   if (result.trends.get(m) or {}).get("trend") in (GROWING, UNCLEAR)
                   and rate(result, m) > 0]
    else:
        growing = growing_metrics(result)
        if not growing:
            return False
    # Where a counted figure explains the growth, the heap and resident
    # memory need not match (under AddressSanitizer resident memory grows
    # with its quarantine).
    for m in counted_first(growing):
        test_rate, fix_rate = rate(result, m), rate(fixture_result, m)
        slack = 64.0 if m in ("bytes", "native_bytes", "heap_bytes", "rss_bytes") else 0.25
        if fix_rate < 0.9 * test_rate - slack:
            return False
    return True


# ---------------------------------------------------------------------------
# The screen (before the full check; _run.py: CheckRun._screen)
#
# A body that the driver can call is first repeated in birth epochs of its
# own, with the automatic collector off and a young collection after every
# call (session.c: the screen): `warm` calls, walk A, SCREEN_EPOCHS epochs
# of `calls` calls, one tail call, walk B (a slow body: no warm call, fewer
# epochs, so the screen costs about one more call of it).  The screen only ever clears: a
# body it cannot clear gets the full check.  It clears when nothing the
# screened calls made is still alive and nothing else moved:
#
#   - no block survives from the judged epochs (with three or more epochs,
#     the first may still hold the end of a cache's fill and the last what
#     the next call replaces: the middle ones must be empty);
#   - the reference total, the objects, the descriptors and the threads are
#     the same at A and at B (to the unit);
#   - the process's malloc heap moved by less than SCREEN_NATIVE_SLACK bytes
#     per screened call (the heap includes the interpreter's own large
#     blocks, which are tracked and counted above); a batch's screen also
#     leaves out what the blocks alive at B that were born after A take of
#     it (survivors_explain_moves) when it names the tests that made them.
#
# A leak of one block every k calls leaves a survivor in a middle epoch as
# soon as the middle epochs hold k calls; so the screen clears nothing
# that leaks at a rate of 1 / (middle calls) or more: SCREEN_CALLS_SEEN.

SCREEN_EPOCHS = 8           # judged epochs for a fast body
SCREEN_BUDGET = 0.005       # seconds of calls a screen may take at least ...
SCREEN_BUDGET_RATIO = 1.0   # ... or this many times one call of the body
SCREEN_MAX_CALLS = 25       # calls per epoch, at most
SCREEN_NATIVE_SLACK = 16.0  # bytes per screened call
SCREEN_RETIME = 0.02        # a first run faster than this is timed again


def screen_plan(seconds_per_call):
    """(warm, calls per epoch, epochs) for a body that takes this long."""
    t = max(seconds_per_call, 1e-7)
    budget = max(SCREEN_BUDGET, SCREEN_BUDGET_RATIO * t)
    calls = int(budget / (SCREEN_EPOCHS * t))
    calls = max(1, min(calls, SCREEN_MAX_CALLS))
    epochs = max(1, min(SCREEN_EPOCHS, int(budget / (calls * t))))
    # A slow body gets no warm call of its own: its normal run was one.
    warm = calls if epochs >= 3 else 0
    return warm, calls, epochs


# A body at least this slow has the first round's walks follow full
# collections too (as the later rounds' do): a full collection of a test
# process (tens of thousands of objects) takes a few milliseconds, little
# next to one call of such a body, while a second round costs two calls.
SCREEN_FULL_COLLECTION_BODY = 0.02


def screen_generation(seconds_per_call):
    """The collection before the first round's walks: 1 (young) for a fast
    body, 2 (full) for a slow one (SCREEN_FULL_COLLECTION_BODY)."""
    return 2 if seconds_per_call >= SCREEN_FULL_COLLECTION_BODY else 1


def screen_lazy_tail(seconds_per_call):
    """Is the screen's tail call (which lets a call's leftovers be replaced
    before walk B) made only when a walk before it finds something?  For a
    slow body (SCREEN_FULL_COLLECTION_BODY): one call of it costs more than
    the walk, and most bodies leave nothing to replace."""
    return seconds_per_call >= SCREEN_FULL_COLLECTION_BODY


def judged_epochs(epochs):
    """Which of a screen's `epochs` epochs (0-based) are judged: all of one
    or two, else all but the first and the last."""
    return range(1, epochs - 1) if epochs >= 3 else range(epochs)


def screen_judged(blocks):
    """The survivors that count, from the screen's blocks per epoch (warm,
    epochs..., tail)."""
    return [blocks[1 + e] for e in judged_epochs(len(blocks) - 2)]


def _screen_moves(screen):
    """What moved from walk A to walk B besides surviving blocks."""
    why = []
    for key in ("refs", "objects", "fds", "threads"):
        a, b = screen[key]
        if a >= 0 and b >= 0 and a != b:
            why.append("%s %+d" % (key, b - a))
    a, b = screen["native_bytes"]
    if a >= 0 and b >= 0 and b - a > SCREEN_NATIVE_SLACK * screen_calls(screen):
        why.append("native_bytes %+d" % (b - a))
    return why


def screen_survivors_heap(screen):
    """The bytes of malloc's heap that the blocks born after walk A and
    alive at walk B take at most (session.c: the screen's heap_bytes): the
    heap's growth they account for."""
    heap = screen.get("heap_bytes")
    return sum(heap[1:]) if heap else 0


def survivors_explain_moves(screen):
    """Did nothing move besides the surviving blocks, counting malloc's
    heap grown by no more than the slack and what those blocks take of it
    (screen_survivors_heap)?  A batch's screen then names the tests whose
    bodies made blocks that outlive its calls (_pytest_batch): the blocks
    are judged themselves, test by test, so a heap moved by them says
    nothing else.  (A test's own screen does not count the heap so: its
    rounds after blocks alone cost two calls each for a slow body.)"""
    if _screen_moves(dict(screen, native_bytes=(0, 0))):
        return False
    a, b = screen["native_bytes"]
    return a < 0 or b < 0 or \
        b - a <= SCREEN_NATIVE_SLACK * screen_calls(screen) + screen_survivors_heap(screen)


def screen_calls(screen):
    """The calls a screen round made after walk A (the tail's: 0 when a
    lazy tail was not needed)."""
    return screen["calls"] * screen["epochs"] + screen.get("tail", 1)


def screen_outcome(screen, earlier=None, earlier_now=None):
    """("clean", reason) or ("suspect", reason) for a screen's figures
    (the dict of _core.Session.screen, plus "calls" and "epochs").

    earlier, earlier_now: the previous round's figures and the blocks of
    its judged epochs still alive now (a second round).  Blocks that
    survived the first round and have died since were state that a later
    call replaces (the last result kept, a buffer reused), not a leak: a
    leak's blocks never die.  Then only what else moved counts."""
    why = []
    survivors = screen_judged(screen["blocks"])
    if any(survivors):
        why.append("blocks survive calls (%s per epoch)" % ", ".join(map(str, survivors)))
    moves = _screen_moves(screen)
    why += moves
    if not why:
        return "clean", "nothing survived %d calls in %d epochs" % (screen_calls(screen),
                                                                   screen["epochs"])
    if earlier is not None and earlier_now is not None and not moves and \
            not any(earlier_now):
        return "clean", ("the blocks that survived %d calls died within %d more, and nothing "
                         "else moved: state that a later call replaces"
                         % (screen_calls(earlier), screen_calls(screen)))
    return "suspect", "; ".join(why)


def screen_blocks_only(screen):
    """Did only blocks survive (nothing else moved)?  Then a full collection
    tells whether they were a leak: a leak's blocks never die, while the
    interpreter's free lists (dict keys, frames) and the state a later call
    replaces are emptied or dropped by it."""
    return any(screen_judged(screen["blocks"])) and not _screen_moves(screen)


def screen_lost(screen, earlier, earlier_now, lost):
    """Has the screen proven a leak of blocks lost for good?  screen: the
    last round's figures; earlier, earlier_now: the round before it and
    the blocks of its judged epochs alive now; lost: lost.c's blocks per
    epoch of the last round (Session.lost_survivors), or None.

    Only blocks moved (survivors_explain_moves: the references, objects,
    descriptors and threads stayed put, malloc's heap by no more than the
    blocks take of it), every block the round before kept is still alive
    after the full collections since (a leak's blocks never die), blocks
    survived every judged epoch of this round, and they are lost
    (growth_lost at SCREEN_LOST_SHARE of the median epoch's survivors, some
    in every judged epoch).  No cache can give back a block
    it holds no pointer to: such blocks need neither the full check's
    trend test nor patience (msgpack's three leaks of CPython's tracemalloc
    tracebacks, 9 to 27 blocks a call)."""
    if earlier is None or earlier_now is None or lost is None:
        return False
    before = screen_judged(earlier["blocks"])
    if not any(before) or any(now < kept for now, kept in zip(earlier_now, before)):
        return False
    judged = screen_judged(screen["blocks"])
    if len(judged) < 3 or not all(judged) or not survivors_explain_moves(screen):
        return False
    median = sorted(judged)[len(judged) // 2]
    return growth_lost([0] + screen_judged([0] + list(lost) + [0]) + [0], median,
                       SCREEN_LOST_SHARE)


def screen_lost_rates(screen):
    """{metric: per call} of a leak the screen proved (screen_lost): its
    judged epochs' surviving blocks and bytes over their calls, the malloc
    heap's move over the round's calls; the references, objects and
    descriptors stayed put (0); the extensions' native blocks and resident
    memory are not measured by the screen (None)."""
    judged = screen_judged(screen["blocks"])
    calls = screen["calls"] * len(judged)
    rates = dict.fromkeys(("refs", "objects", "fds"), 0.0)
    rates["blocks"] = round(sum(judged) / calls, 4)
    rates["bytes"] = round(sum(screen_judged(screen["bytes"])) / calls, 4)
    a, b = screen["native_bytes"]
    rates["heap_bytes"] = round((b - a) / screen_calls(screen), 4) if a >= 0 and b >= 0 \
        else None
    rates["native_blocks"] = rates["native_bytes"] = rates["rss_bytes"] = None
    return rates


def screen_references(screen, earlier):
    """Did the screen see references alone grow, round after round?  screen,
    earlier: its last two rounds' figures.  Every round's reference total
    grew (by half the other round's growth per call at least), and nothing
    else moved: no block survived a judged epoch, the objects, descriptors,
    threads and malloc's heap stayed put.  Such a test skips the trend test
    and goes to the diagnosis and the count of the words that hold the
    objects' addresses (references nothing holds: an unbalanced Py_INCREF);
    when those do not prove it, the full check runs."""
    if earlier is None:
        return False
    rates = []
    for r in (earlier, screen):
        if any(screen_judged(r["blocks"])):
            return False
        moves = _screen_moves(r)
        a, b = r["refs"]
        if len(moves) != 1 or not moves[0].startswith("refs ") or b <= a:
            return False
        rates.append((b - a) / screen_calls(r))
    return min(rates) >= 0.5 * max(rates)


def screen_reference_rates():
    """{metric: per call} besides the references of a leak proven after
    screen_references: what the screen saw stay put (0); what it does not
    measure (None)."""
    rates = dict.fromkeys(("objects", "blocks", "bytes", "fds"), 0.0)
    rates.update(dict.fromkeys(("native_blocks", "native_bytes", "heap_bytes", "rss_bytes")))
    return rates


def proof_trends(rates, calls, epochs, metrics=("blocks", "bytes"), proof="lost for good"):
    """The trends of a leak proven without the trend test (the screen's
    blocks lost for good, references nothing holds): its metrics growing,
    by proof, with no p-value."""
    return {m: {"trend": GROWING, "slope": rates[m] * calls, "p_up": None, "p_down": None,
                "window": epochs, "proof": proof}
            for m in metrics if rates.get(m)}


SCREEN_ROUNDS = 3           # rounds of the screen at most (see screen_again)
SCREEN_FEW_SURVIVORS = 2    # blocks of a single judged epoch worth a second round


def screen_again(screen, rounds, generation):
    """Take the screen again (up to SCREEN_ROUNDS rounds)?  Always after a
    first round whose walks followed young collections (generation 1, a
    fast body): the second follows full collections, so what only they
    free (cycles that reached an older generation, such as the modules a
    test's fresh import replaced, free lists) no longer counts, and a round
    of a fast body costs little next to a full check (a leak pays it too:
    a few per cent of its check).  Otherwise when growth stopped within it
    (the last judged epoch left no block: a cache that filled during the
    first epochs), or when only blocks survived (nothing else moved: the
    next round shows whether they die).  Blocks surviving every judged
    epoch after full collections while references or objects grow are a
    leak's pattern: the full check decides (a slow body's round costs two
    of its calls) -- unless that pattern rests on one judged epoch (a slow
    body's one call) holding at most SCREEN_FEW_SURVIVORS blocks: a second
    round costs one or two calls where the full check costs nine or more,
    and a thread's leftovers (a free-threading test of simplejson under
    pytest-xdist: one block and a new malloc arena, 2.4 s of full check)
    are gone by then."""
    if rounds >= SCREEN_ROUNDS:
        return False
    if rounds == 1 and generation == 1:
        return True
    judged = screen["blocks"][1:-1]
    if rounds == 1 and len(judged) == 1 and 0 < judged[0] <= SCREEN_FEW_SURVIVORS:
        return True
    return not judged or judged[-1] == 0 or not all(judged) or not _screen_moves(screen)


def screen_round_over_budget(spent, last_round, budget):
    """Would another round of the screen (about as long as the last one,
    `last_round` s) take the screen past the per-test budget, having spent
    `spent` s?  A slow body on a busy machine (a thread-safety test under
    pytest-xdist: 3 s a call) has used the budget after one round; a second
    one could only clear it, and the check ends inconclusive instead, as
    when its full check would not fit."""
    return spent + last_round > budget


def full_check_seconds(options, calls, seconds_per_call, sample_seconds):
    """The least time a full check takes: warm-up and the minimum of measured
    iterations, each `calls` calls and a sample (patience, diagnosis and
    attribution come on top)."""
    iterations = max(options.warmup, 1) + options.min_iterations
    return iterations * (calls * seconds_per_call + sample_seconds)


# A full check that could only clear a test (a growth it saw could not be
# confirmed as a leak within the patience budget: the body is too slow for
# ten times the calls) is worth less than one that can find a leak: it runs
# when it fits in this share of the budget.
CLEAR_ONLY_SHARE = 0.5


def leak_confirmable(options, calls, seconds_per_call, sample_seconds):
    """Could patience confirm a growth the least full check saw (ten times
    its measured calls within options.patience)?  True when patience is
    off: a growth is then a verdict of its own."""
    if options.patience <= 0:
        return True
    seen = calls * options.min_iterations
    return patience_stage(seen, None, seconds_per_call, sample_seconds,
                          options.patience) is not None


def screen_sensitivity(calls, epochs):
    """The rarest leak (one block every N calls) the screen cannot clear."""
    return max(1, len(judged_epochs(epochs)) * calls)


# ---- The screen of a batch of tests (pytest --refhound; _pytest_batch.py) -----
#
# The tests of one class or module whose bodies can be called again after
# their teardown are screened together: one pass of the batch's body calls
# each test's body at most once, and the two walks are shared.  A test's
# tier is set by its body's time; the batch's plan is its fastest tier's,
# and a slower test joins only the passes that give it the judged calls
# its own tier's plan would (at least what the screen of a test on its
# own gives a body of that time).

BATCH_MAX = 64                  # tests in a batch, at most
BATCH_BUDGET = 0.001            # seconds of screened calls per fast test
# (slowest body, warm calls, calls per epoch, epochs, judged epochs it
# joins); calls None: from BATCH_BUDGET; judged None: every pass
BATCH_TIERS = ((0.0002, 1, None, 8, None),  # fast: at least 12 judged calls each
               (0.0006, 1, 1, 8, 6),        # middle: 6 judged calls each
               (0.05, 1, 1, 2, 2))          # slow: 2 judged calls
# A body of the slow tier at least this slow joins one judged epoch and
# the tail, with no warm call (its normal run was one): what a body this
# slow gets on its own (screen_plan).
BATCH_LATE = 0.0025
# The slow tier's bodies of a batch are screened apart from its faster
# ones when they take at least this long in all (their normal runs): a
# screen of their own costs two walks (10 to 20 ms in a test process),
# and a group that holds them calls them again at every level of halving
# down to a fast test that leaks.
BATCH_SLOW_APART = 0.05


def batch_tier(seconds):
    """The tier of a test whose body took this long, or None: screened on
    its own (a body this slow pays little for its own walks)."""
    for k, tier in enumerate(BATCH_TIERS):
        if seconds < tier[0]:
            return k
    return None


def batch_plan(tiers, seconds):
    """(warm, calls, epochs) for a batch whose tests are of `tiers` and
    take `seconds` (the bodies of the fastest tier, in all)."""
    lead = min(tiers)
    _, warm, calls, epochs, _ = BATCH_TIERS[lead]
    if calls is None:
        n = sum(1 for t in tiers if t == lead)
        calls = int(n * BATCH_BUDGET / (epochs * max(seconds, 1e-7)))
        calls = max(2, min(calls, SCREEN_MAX_CALLS))
    return warm, calls, epochs


def tail_pass(plan):
    """The index of the tail pass of a batch's body under `plan` (warm,
    calls, epochs): the passes are 0 .. tail_pass(plan)."""
    warm, calls, epochs = plan
    return warm + calls * epochs


def batch_passes(tier, seconds, plan, lead):
    """The passes of its batch's body (0 .. warm + calls x epochs: warm
    passes, epochs, the tail) that call a test of `tier` whose body took
    `seconds`, under the plan of a batch whose fastest tier is `lead`;
    None: every pass.  (A batch called again repeats its plan.)"""
    warm, calls, epochs = plan
    late = tier == len(BATCH_TIERS) - 1 and seconds >= BATCH_LATE
    if tier == lead and not late:
        return None
    judged = judged_epochs(epochs)
    joins = 1 if late else min(BATCH_TIERS[tier][4], len(judged))
    # Its judged epochs are the last it may join; a middle body in a fast
    # batch joins every epoch, as in its own tier's plan.
    epochs_in = range(epochs) if joins >= len(judged) else judged[-joins:]
    out = {warm + calls * e for e in epochs_in}
    out.add(tail_pass(plan))
    if not late:
        out.update(range(warm))
    return frozenset(out)
