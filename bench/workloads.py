"""Allocation-heavy workloads for the overhead benchmark (bench/overhead.py).

Each workload is a function `make(scale)` that does its set-up (inputs,
imports) and returns `run()`, the part that is timed.  At scale 1.0 each
`run()` takes roughly 0.3-1 s on the plain interpreter of the bench machine
(a 2-core Xeon at 2.1 GHz).  The set-up runs before any tool is started, so
a tool's start cost (refhound's adoption of existing objects, memray's
file) is measured apart from the workload.

    churn       lists, dicts, tuples and small ints/floats built and dropped
    strings     str building: f-strings, join, concatenation, split, encode
    json        json.dumps / json.loads round trip of a nested document
    instances   instances of small classes (managed __dict__, __slots__)
                and a bound-method / closure churn
    bigblocks   large blocks: bytes and bytearray resizing, big lists; the
                blocks above 512 bytes go from pymalloc to the raw domain
    threads     three threads: zlib/lzma decompression and bytes slicing;
                zlib and lzma allocate their state and windows through
                PyMem_RawMalloc with the GIL released (raw domain, no GIL)

`python3 bench/workloads.py [--scale S] [NAME ...]` times each one plainly.
"""
import argparse
import sys
import threading
import time


def make_churn(scale=1.0):
    n = int(200000 * scale)

    def run():
        keep = None
        for i in range(n):
            t = (i, i + 1, float(i), str(i & 1023))
            l = [t, [i, i * 2], {"k": i, "v": t}]
            d = {j: (j, l) for j in range(6)}
            l.append(d)
            s = set(range(i & 15))
            keep = (l, s)
        return keep

    return run


def make_strings(scale=1.0):
    n = int(250000 * scale)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]

    def run():
        total = 0
        for i in range(n):
            s = f"{words[i & 7]}-{i}-{i * 3.5:.2f}"
            parts = s.split("-")
            joined = "/".join(parts + [str(i)] * 3)
            acc = ""
            for w in parts:
                acc += w.upper()
            enc = (joined + acc).encode("utf-8")
            total += len(enc.decode("latin-1").replace("A", "bb"))
        return total

    return run


def make_json(scale=1.0):
    import json
    doc = {
        "users": [
            {"id": i, "name": "user%d" % i, "score": i * 1.25, "tags": ["a", "b", str(i)],
             "active": bool(i & 1), "meta": {"x": i, "y": [i, i + 1, None]}}
            for i in range(200)
        ],
        "version": "1.0",
    }
    rounds = int(500 * scale)

    def run():
        out = None
        for _ in range(rounds):
            text = json.dumps(doc)
            out = json.loads(text)
        return out

    return run


class _Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y
        self.label = None

    def moved(self, dx):
        return _Point(self.x + dx, self.y)


class _Slotted:
    __slots__ = ("a", "b", "c")

    def __init__(self, a, b, c):
        self.a = a
        self.b = b
        self.c = c


class _Node(_Point):
    def __init__(self, x, y, parent=None):
        super().__init__(x, y)
        self.parent = parent
        self.children = []


def make_instances(scale=1.0):
    n = int(280000 * scale)

    def run():
        root = _Node(0, 0)
        last = None
        for i in range(n):
            p = _Point(i, -i).moved(1)
            s = _Slotted(p, i, (i,))
            node = _Node(i, i, root)
            node.children.append(s)
            f = p.moved
            g = (lambda v, p=p: p.x + v)
            last = (f(2), g(3), node)
            if i % 1000 == 0:
                root = _Node(i, 0)
        return last

    return run


def make_bigblocks(scale=1.0):
    n = int(40000 * scale)

    def run():
        keep = []
        for i in range(n):
            ba = bytearray()
            for j in range(24):
                ba += b"x" * (700 + 90 * j)         # realloc of a growing block
            b = bytes(ba)                            # ~ 42 KB copy
            chunks = [b[k:k + 4096] for k in range(0, len(b), 4096)]
            big = [None] * (2000 + (i & 7))          # ~16 KB item array
            keep.append(chunks)
            if len(keep) > 8:
                keep.pop(0)
            del big
        return len(keep)

    return run


def make_threads(scale=1.0):
    import lzma
    import zlib
    payload = (b"refhound benchmark payload " * 40 + bytes(range(256))) * 64
    zblob = zlib.compress(payload, 6)
    xblob = lzma.compress(payload[:16384], preset=1)
    n = int(2500 * scale)

    def zlib_worker():
        for _ in range(n):
            zlib.decompress(zblob)
            zlib.compressobj(1).compress(payload[:8192])

    def lzma_worker():
        for _ in range(max(n // 3, 1)):
            lzma.decompress(xblob)

    def bytes_worker():
        for i in range(n * 20):
            view = payload[i & 1023:(i & 1023) + 2048]
            bytes(view).upper()

    def run():
        threads = [threading.Thread(target=f) for f in (zlib_worker, lzma_worker, bytes_worker)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return len(threads)

    return run


WORKLOADS = {
    "churn": make_churn,
    "strings": make_strings,
    "json": make_json,
    "instances": make_instances,
    "bigblocks": make_bigblocks,
    "threads": make_threads,
}


def make_peak(n=1_000_000):
    """A workload that holds about `n` live blocks at its peak (small
    tuples of one float each: two blocks per element, so n // 2 of them)."""
    def run():
        held = [(float(i),) for i in range(n // 2)]
        return held

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=list(WORKLOADS))
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args(argv)
    for name in args.names:
        run = WORKLOADS[name](args.scale)
        t = time.perf_counter()
        run()
        print("%-10s %.3f s" % (name, time.perf_counter() - t))


if __name__ == "__main__":
    sys.exit(main())
