"""The true culprit line of a corpus case, read from the interpreter's own
DWARF with gdb (independently of refhound): the lines of the calls, inside
the function that drops the reference, to the function that made it.

For a build whose DWARF has no inlined functions the interpreter lists a
build of the same sources that has them (Debian's python3.11 and
python3.11-dbg come from one source package)."""
import functools
import glob
import os
import re
import shutil
import subprocess


def _gdb(obj, *commands):
    args = ["gdb", "-batch", "-nx"]
    for c in commands:
        args += ["-ex", c]
    return subprocess.run(args + [obj], capture_output=True, text=True, timeout=600).stdout


@functools.lru_cache(maxsize=None)
def call_lines(obj, function, callees):
    """{(source file name, line)} of the calls from `function` to any of
    `callees` in the ELF object `obj` (its separate debug file is found by
    gdb as usual)."""
    out = _gdb(obj, "disassemble '%s'" % function)
    pattern = r"^\s*(0x[0-9a-f]+)\s+<[^>]*>:\s+call\s+\S+\s+<(%s)(@plt)?>" % "|".join(
        re.escape(c) for c in callees)
    addrs = [m.group(1) for m in re.finditer(pattern, out, re.M)]
    if not addrs:
        return frozenset()
    out = _gdb(obj, *["info line *%s" % a for a in addrs])
    return frozenset((os.path.basename(f), int(n))
                     for n, f in re.findall(r'Line (\d+) of "([^"]+)"', out))


@functools.lru_cache(maxsize=None)
def inlined_call_lines(obj, function, callees):
    """{(source file name, line)} in `function` of the calls to any of
    `callees` that the compiler inlined (tracemalloc's raw_malloc: its
    indirect call through the allocator table is all that is left): the
    indirect calls of `function` whose innermost inlined frame is a callee,
    at the line of `function` that called it (binutils' addr2line -i)."""
    if shutil.which("addr2line") is None:
        return frozenset()
    out = _gdb(obj, "disassemble '%s'" % function)
    addrs = re.findall(r"^\s*(0x[0-9a-f]+)\s+<[^>]*>:\s+call\s+\*", out, re.M)
    lines = set()
    for a in addrs:
        text = subprocess.run(["addr2line", "-i", "-f", "-e", obj, a], capture_output=True,
                              text=True, timeout=60).stdout.splitlines()
        chain = list(zip(text[0::2], text[1::2]))        # (function, file:line), innermost first
        if not chain or chain[0][0] not in callees:
            continue
        for fn, where in chain[1:]:
            if fn == function and ":" in where:
                path, _, line = where.rpartition(":")
                if line.split()[0].isdigit():
                    lines.add((os.path.basename(path), int(line.split()[0])))
                break
    return frozenset(lines)


def objects_of(python):
    """The ELF objects an interpreter's code lives in: the executable,
    libpython, its lib-dynload modules."""
    real = os.path.realpath(python)
    prefix = os.path.dirname(os.path.dirname(real))
    out = [real] + sorted(glob.glob(os.path.join(prefix, "lib", "libpython3*.so*")))
    out += sorted(glob.glob(os.path.join(prefix, "lib", "python3*", "lib-dynload", "*.so")))
    if prefix == "/usr":
        out += sorted(glob.glob("/usr/lib/python3*/lib-dynload/*.so"))
    return out


def true_lines(python, function, callees, source, which=None, inlined=False):
    """The true lines of a case on an interpreter, or an empty set."""
    if shutil.which("gdb") is None:
        return frozenset()
    debug = "d-" in os.path.basename(os.path.realpath(python)) or python.endswith("d")
    for obj in objects_of(python):
        base = os.path.basename(obj)
        if ".so" in base and "lib-dynload" in obj:
            if ("311d-" in base) != debug and "cpython-311" in base:
                continue
        sources = (source,) if isinstance(source, str) else tuple(source)
        found = (inlined_call_lines if inlined else call_lines)(obj, function, tuple(callees))
        lines = frozenset(x for x in found if x[0] in sources)
        if lines:
            if which == "first":
                return frozenset([min(lines)])
            if which == "last":
                return frozenset([max(lines)])
            return lines
    return frozenset()
