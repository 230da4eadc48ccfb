"""refhound doctor — what this interpreter and machine support, and how to get more.

Every answer is found out, not assumed: the build flags from the running
interpreter (refhound._build), a real hardware watchpoint opened and hit
(refhound._core.watchpoint_probe), debug symbols read from the ELF files
(sections, build-id, debuglink, the compiler flags recorded in DWARF),
Valgrind run for its version, frame pointers checked in the code itself.
"""
import ctypes.util
import importlib.util
import json
import mmap
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

from ..cli import EXIT_CLEAN, EXIT_USAGE, fail_usage, write_json

DEBUG_ROOT = "/usr/lib/debug"


def add_parser(sub):
    d = sub.add_parser("doctor", help="what this interpreter and machine support, and how to "
                                      "get more")
    d.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the findings as JSON to FILE (- or nothing: stdout)")
    d.add_argument("--module", metavar="NAME|PATH",
                   help="also check a compiled extension: an importable module name "
                        "(not imported, only located) or a path to its .so")


def run(args):
    module_path = None
    if args.module:
        module_path, error = _locate_module(args.module)
        if error:
            return fail_usage(error)
    report = diagnose(module_path, args.module)
    if args.json is not None:
        if write_json(args.json, json.dumps(report, indent=2, sort_keys=True)) is None:
            return EXIT_USAGE
    else:
        sys.stdout.write(render(report))
    return EXIT_CLEAN


# ---- locating things ---------------------------------------------------------------

def _locate_module(name):
    """(path of the extension's .so, None) or (None, error message)."""
    if os.sep in name or name.endswith(".so"):
        if not os.path.isfile(name):
            return None, "no such file: %s" % name
        return os.path.abspath(name), None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        return None, "cannot locate module %s: %s" % (name, exc)
    if spec is None or spec.origin is None:
        return None, "no module named %r on this interpreter's path" % name
    if not spec.origin.endswith((".so", ".pyd")):
        return None, "%s is not a compiled extension module (it is %s)" % (name, spec.origin)
    return spec.origin, None


def _interpreter_elf():
    """The ELF file that holds the interpreter's code: libpython when it is a
    shared library, else the executable."""
    from .._build import loaded_libpython
    return loaded_libpython() or os.path.realpath(sys.executable)


# ---- ELF --------------------------------------------------------------------------

class Elf:
    """Just enough of a 64-bit little-endian ELF reader: sections, notes,
    symbols and bytes at an address.  Raises ValueError on anything else."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as fh:
            self.map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        m = self.map
        if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:
            raise ValueError("%s is not a 64-bit little-endian ELF file" % path)
        shoff, = struct.unpack_from("<Q", m, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", m, 0x3A)
        raw = [struct.unpack_from("<IIQQQQIIQQ", m, shoff + i * shentsize) for i in range(shnum)]
        names = raw[shstrndx] if shstrndx < len(raw) else None
        self.sections = []
        for name, stype, flags, addr, offset, size, link, info, align, entsize in raw:
            label = ""
            if names is not None:
                start = names[4] + name
                end = m.find(b"\0", start)
                label = m[start:end].decode("ascii", "replace")
            self.sections.append({"name": label, "type": stype, "flags": flags, "addr": addr,
                                  "offset": offset, "size": size, "link": link,
                                  "entsize": entsize})

    def close(self):
        self.map.close()

    def section(self, name):
        for s in self.sections:
            if s["name"] == name:
                return s
        return None

    def data(self, sec, limit=None):
        if sec["type"] == 8:            # SHT_NOBITS: nothing in the file
            return b""
        raw = self.map[sec["offset"]:sec["offset"] + sec["size"]]
        if sec["flags"] & 0x800:        # SHF_COMPRESSED: Elf64_Chdr + zlib
            ctype, = struct.unpack_from("<I", raw, 0)
            if ctype != 1:
                return b""
            d = zlib.decompressobj()
            return d.decompress(raw[24:], limit or 0)
        return raw if limit is None else raw[:limit]

    def has_debug_info(self):
        s = self.section(".debug_info")
        return s is not None and s["type"] != 8 and s["size"] > 0

    def build_id(self):
        s = self.section(".note.gnu.build-id")
        if s is None:
            return None
        d = self.data(s)
        namesz, descsz, _ = struct.unpack_from("<III", d, 0)
        start = 12 + ((namesz + 3) & ~3)
        return d[start:start + descsz].hex()

    def debuglink(self):
        s = self.section(".gnu_debuglink")
        if s is None:
            return None
        d = self.data(s)
        return d[:d.find(b"\0")].decode("utf-8", "replace")

    def producers(self, limit=4):
        """Compiler identification strings recorded in DWARF (gcc records
        its command-line switches there by default: -grecord-gcc-switches)."""
        found = []
        for name in (".debug_str", ".debug_line_str"):
            s = self.section(name)
            if s is None:
                continue
            d = self.data(s, limit=64 << 20)
            for m in re.finditer(rb"(?:GNU C|GNU C\+\+|clang version)[^\x00]{0,4000}", d):
                text = m.group(0).decode("utf-8", "replace")
                if text not in found:
                    found.append(text)
                if len(found) >= limit:
                    return found
        return found

    def functions(self):
        """(name, address, size) of the defined functions in .symtab (or
        .dynsym when stripped)."""
        for table in (".symtab", ".dynsym"):
            s = self.section(table)
            if s is None or s["entsize"] == 0:
                continue
            strtab = self.sections[s["link"]]
            data = self.data(s)
            out = []
            for off in range(0, len(data) - 23, 24):
                name, info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ", data, off)
                if info & 0xF != 2 or shndx == 0 or size == 0:
                    continue
                start = strtab["offset"] + name
                label = self.map[start:self.map.find(b"\0", start)].decode("utf-8", "replace")
                out.append((label, value, size))
            if out:
                return out
        return []

    def bytes_at(self, addr, n):
        for s in self.sections:
            if s["type"] not in (0, 8) and s["addr"] <= addr < s["addr"] + s["size"] \
                    and s["flags"] & 0x4:  # SHF_EXECINSTR
                off = s["offset"] + addr - s["addr"]
                return self.map[off:off + n]
        return None


def _frame_setup(code):
    """x86-64: `mov %rsp,%rbp` near the entry of a function."""
    return b"\x48\x89\xe5" in code[:48]


def _fp_from_producers(producers):
    """yes / no / None from the compiler switches recorded in DWARF."""
    flags = " ".join(producers)
    if not flags:
        return None
    if "-fno-omit-frame-pointer" in flags:
        return "yes"
    if "-fomit-frame-pointer" in flags or re.search(r"(^|\s)-O[123s]?\b", flags) \
            or "-O" in flags.split():
        return "no"     # gcc omits frame pointers from -O1 on (x86-64)
    return None


def _fp_sample_elf(elf, max_functions=400):
    if os.uname().machine != "x86_64":
        return None
    funcs = [f for f in elf.functions() if f[2] >= 48]
    if not funcs:
        return None
    step = max(1, len(funcs) // max_functions)
    checked = with_fp = 0
    for name, addr, size in funcs[::step]:
        code = elf.bytes_at(addr, 48)
        if code is None:
            continue
        checked += 1
        with_fp += _frame_setup(code)
    return {"checked": checked, "with_frame_pointer": with_fp} if checked else None


def _fp_verdict(sample):
    if not sample or not sample["checked"]:
        return None
    share = sample["with_frame_pointer"] / sample["checked"]
    return "yes" if share >= 0.5 else "no" if share <= 0.15 else "partly"


def _separate_debug_file(path, build_id, debuglink):
    """A separate debug file for `path`, the way gdb looks for one."""
    if build_id and len(build_id) > 2:
        candidate = os.path.join(DEBUG_ROOT, ".build-id", build_id[:2], build_id[2:] + ".debug")
        if os.path.isfile(candidate):
            return candidate
    if debuglink:
        d = os.path.dirname(os.path.realpath(path))
        for candidate in (os.path.join(d, debuglink), os.path.join(d, ".debug", debuglink),
                          os.path.join(DEBUG_ROOT, d.lstrip("/"), debuglink)):
            if os.path.isfile(candidate) and os.path.realpath(candidate) != os.path.realpath(path):
                return candidate
    return None


def debug_symbols(path):
    """What debug information exists for the ELF file at path."""
    out = {"path": path, "debug_info": False, "symbols": False, "build_id": None,
           "debuglink": None, "separate_debug_file": None, "producers": [],
           "frame_pointers": None, "frame_pointer_sample": None, "verdict": "no",
           "error": None}
    try:
        elf = Elf(path)
    except (OSError, ValueError, struct.error) as exc:
        out["error"] = str(exc)
        out["verdict"] = "unknown"
        return out
    try:
        out["debug_info"] = elf.has_debug_info()
        out["symbols"] = elf.section(".symtab") is not None
        out["build_id"] = elf.build_id()
        out["debuglink"] = elf.debuglink()
        out["frame_pointer_sample"] = _fp_sample_elf(elf)
        producers = elf.producers() if out["debug_info"] else []
        if not out["debug_info"]:
            out["separate_debug_file"] = _separate_debug_file(path, out["build_id"],
                                                              out["debuglink"])
            if out["separate_debug_file"]:
                try:
                    dbg = Elf(out["separate_debug_file"])
                    try:
                        producers = dbg.producers() if dbg.has_debug_info() else []
                        out["symbols"] = out["symbols"] or dbg.section(".symtab") is not None
                    finally:
                        dbg.close()
                except (OSError, ValueError, struct.error):
                    pass
    except (ValueError, struct.error, zlib.error) as exc:
        out["error"] = "unreadable ELF: %s" % exc
    finally:
        elf.close()
    out["producers"] = producers
    out["frame_pointers"] = (_fp_from_producers(producers)
                             or _fp_verdict(out["frame_pointer_sample"]))
    out["verdict"] = ("in the file" if out["debug_info"]
                      else "separate file" if out["separate_debug_file"] else "none")
    return out


# ---- the machine -------------------------------------------------------------------

def _read_int(path):
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _core():
    try:
        from .. import _core
        return _core, None
    except ImportError as exc:
        return None, str(exc)


def watchpoints(core):
    out = {"perf_event_paranoid": _read_int("/proc/sys/kernel/perf_event_paranoid"),
           "allowed": None, "opened": None, "errno": None, "error": None,
           "hits": None, "writes": None}
    if core is None or not hasattr(core, "watchpoint_probe"):
        out["error"] = "refhound's engine is not built, so no watchpoint could be tried"
        return out
    w = core.watchpoint_probe()
    out.update(opened=w["opened"], errno=w["errno"] or None, error=w["error"],
               hits=w["hits"], writes=w["writes"])
    out["allowed"] = bool(w["opened"] and w["hits"] == w["writes"])
    if w["opened"] and not out["allowed"]:
        out["error"] = ("the watchpoint opened but counted %d of %d writes"
                        % (w["hits"], w["writes"]))
    return out


def valgrind(core):
    path = shutil.which("valgrind")
    out = {"present": path is not None, "path": path, "version": None,
           "engine_has_valgrind_headers": "unknown"}
    if path:
        try:
            proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
            m = re.search(r"(\d+\.\d+(?:\.\d+)?)", proc.stdout)
            out["version"] = m.group(1) if m else proc.stdout.strip() or None
        except (OSError, subprocess.SubprocessError) as exc:
            out["version"] = None
            out["error"] = str(exc)
    if core is not None and hasattr(core, "HAVE_VALGRIND"):
        out["engine_has_valgrind_headers"] = bool(core.HAVE_VALGRIND)
    out["headers_installed"] = os.path.isfile("/usr/include/valgrind/valgrind.h")
    return out


def _pyelftools_version():
    try:
        import elftools
    except ImportError:
        return None
    return getattr(elftools, "__version__", "installed")


def libdw(core):
    """How native frames are read: libdw.so.1, loaded by the engine at run
    time (no headers needed), or else pyelftools with the compiler's
    unwinder."""
    out = {"library": ctypes.util.find_library("dw"), "engine_uses_it": "unknown",
           "why_not": None, "unwinder": None, "pyelftools": _pyelftools_version()}
    if core is not None and hasattr(core, "native_paths"):
        paths = core.native_paths()
        out["engine_uses_it"] = paths["symbols"] == "libdw"
        out["why_not"] = paths["libdw"]
        out["unwinder"] = paths["unwinder"]
    return out


def frame_pointers(core, interp_symbols):
    sample = None
    if core is not None and hasattr(core, "frame_pointer_sample"):
        sample = core.frame_pointer_sample()
    verdict = _fp_verdict(sample) or interp_symbols.get("frame_pointers")
    return {"interpreter": verdict, "running_code_sample": sample,
            "recorded_flags": _fp_from_producers(interp_symbols.get("producers") or []),
            "file_sample": interp_symbols.get("frame_pointer_sample")}


# ---- all together ------------------------------------------------------------------

def diagnose(module_path=None, module_name=None):
    from .._build import build_info
    core, core_error = _core()
    interp = build_info()
    interp_symbols = debug_symbols(_interpreter_elf())
    report = {
        "interpreter": interp,
        "engine": {"loaded": core is not None, "path": getattr(core, "__file__", None),
                   "error": core_error},
        "pymalloc": interp_stats(core),
        "debug_symbols": {"interpreter": interp_symbols, "module": None},
        "watchpoints": watchpoints(core),
        "valgrind": valgrind(core),
        "libdw": libdw(core),
        "frame_pointers": frame_pointers(core, interp_symbols),
    }
    if module_path:
        mod = debug_symbols(module_path)
        mod["name"] = module_name
        report["debug_symbols"]["module"] = mod
        report["frame_pointers"]["module"] = mod["frame_pointers"]
    report["advice"] = advice(report)
    return report


def interp_stats(core):
    if core is None or not hasattr(core, "pymalloc_stats"):
        return None
    st = core.pymalloc_stats()
    return {k: v for k, v in st.items() if k != "size_classes"}


def _interp_packages_hint(interp):
    ver = ".".join(interp["python"].split(".")[:2])
    if interp["executable"].startswith("/usr/"):
        return "apt-get install python%s-dbg" % ver
    return None


def advice(r):
    """Plain words: what to do to get more out of refhound here."""
    tips = []
    i = r["interpreter"]
    ver = ".".join(i["python"].split(".")[:2])
    if not i["py_ref_debug"]:
        dbg = shutil.which("python%s-dbg" % ver)
        if dbg:
            tips.append("A debug interpreter is installed (%s): run refhound under it too, to "
                        "cross-check every reference total against sys.gettotalrefcount(); "
                        "build your extension for it (its modules end in .cpython-%sd-...so)."
                        % (dbg, ver.replace(".", "")))
        else:
            tips.append("For a sys.gettotalrefcount() cross-check, use a debug interpreter: "
                        "apt-get install python%s-dbg (Debian, Ubuntu), or build a leak-hunting "
                        "one with `refhound build-python SOURCE_DIR --prefix DIR`." % ver)
    if not i["py_trace_refs"]:
        tips.append("sys.getobjects() (every live object, the interpreter's own list) needs "
                    "a --with-trace-refs build: `refhound build-python --trace-refs`.")
    if i["freelists"]:
        tips.append("Free lists are on, so a few objects settle in caches after the first "
                    "calls (refhound allows for it); `refhound build-python` builds without "
                    "them.")
    s = r["debug_symbols"]["interpreter"]
    if s["verdict"] == "none":
        hint = _interp_packages_hint(i)
        tips.append("No debug symbols for the interpreter (%s): native frames inside Python "
                    "show as addresses. %s" % (s["path"], ("Install them: %s." % hint) if hint
                                               else "Rebuild it with -g (for example "
                                               "`refhound build-python`, or CFLAGS=-g with "
                                               "pyenv)."))
    m = r["debug_symbols"]["module"]
    if m is not None and m["verdict"] == "none":
        tips.append("%s has no debug information: culprit lines cannot be named. Rebuild it "
                    "with -g, e.g. CFLAGS='-g -O1 -fno-omit-frame-pointer' pip install "
                    "--force-reinstall --no-binary :all: <package>." % m["path"])
    w = r["watchpoints"]
    if w["allowed"] is False:
        para = w["perf_event_paranoid"]
        if w["errno"] in (1, 13):   # EPERM, EACCES
            tips.append("Hardware watchpoints are refused (%s; perf_event_paranoid=%s), so "
                        "unmatched Py_INCREFs on existing objects cannot be traced to their "
                        "line. Allow them: sysctl kernel.perf_event_paranoid=2 (or lower); in "
                        "a container also --cap-add PERFMON (or SYS_ADMIN) and a seccomp "
                        "profile that permits perf_event_open." % (w["error"], para))
        else:
            tips.append("Hardware watchpoints are not available here (%s): a virtual machine "
                        "without debug-register support, or a kernel without "
                        "CONFIG_HAVE_HW_BREAKPOINT. Unmatched Py_INCREFs on existing objects "
                        "are still found, without their line." % (w["error"] or "unknown"))
    v = r["valgrind"]
    if not v["present"]:
        tips.append("Valgrind is not installed: apt-get install valgrind (for `refhound "
                    "valgrind` runs and memory errors outside the Python allocators).")
    if v["engine_has_valgrind_headers"] is False:
        tips.append("refhound's engine was built without Valgrind's headers, so it cannot "
                    "talk to memcheck: install them (apt-get install valgrind) and rebuild "
                    "refhound.")
    if i["with_pymalloc"] and not i["with_valgrind"]:
        tips.append("This interpreter was built without --with-valgrind: under Valgrind run it "
                    "with PYTHONMALLOC=malloc (refhound's Valgrind launcher does this).")
    fp = r["frame_pointers"]["interpreter"]
    if fp in ("no", "partly"):
        tips.append("The interpreter is compiled without frame pointers: native stacks "
                    "through it are unwound from DWARF (slower, and needs its unwind tables). "
                    "`refhound build-python` builds with -fno-omit-frame-pointer.")
    d = r["libdw"]
    if d["engine_uses_it"] is False:
        why = d.get("why_not") or "libdw.so.1 could not be loaded"
        if "REFHOUND_NO_LIBDW" in why:
            fix = "unset REFHOUND_NO_LIBDW"
        else:
            fix = "apt-get install libdw1 (Fedora: dnf install elfutils-libs), no rebuild needed"
        tips.append("%s: native frames are read with pyelftools and stacks with the compiler's "
                    "unwinder, a slower path to the same lines. For the fast one: %s."
                    % (why, fix))
        if not d.get("pyelftools"):
            tips.append("pyelftools is not installed either, so native frames are named by "
                        "symbol only, without file:line: pip install pyelftools.")
    if not r["engine"]["loaded"]:
        tips.append("refhound's engine (refhound._core) is not built for this interpreter: "
                    "pip install refhound, or python setup.py build_ext --inplace in a "
                    "checkout (%s)." % r["engine"]["error"])
    return tips


# ---- text ----------------------------------------------------------------------------

def _yes(value, yes="yes", no="no"):
    return "unknown" if value is None or value == "unknown" else yes if value else no


def render(r):
    i = r["interpreter"]
    lines = ["refhound doctor", "",
             "Interpreter  Python %s (%s)" % (i["python"], i["executable"])]
    row = "  %-28s %s"
    lines.append(row % ("debug build (Py_DEBUG)", _yes(i["py_debug"])))
    total = i["gettotalrefcount"]
    lines.append(row % ("Py_REF_DEBUG", "yes: sys.gettotalrefcount() = %d" % total
                        if i["py_ref_debug"] else "no (no sys.gettotalrefcount)"))
    lines.append(row % ("Py_TRACE_REFS", "yes: sys.getobjects()" if i["py_trace_refs"] else "no"))
    lines.append(row % ("pymalloc compiled in", _yes(i["with_pymalloc"])))
    lines.append(row % ("object allocator", "%s (%s)" % (i["allocator"],
                                                      i["sources"]["allocator"])))
    lines.append(row % ("Valgrind support", _yes(i["with_valgrind"], "yes (--with-valgrind)")))
    lines.append(row % ("free-threading", "yes (GIL %s)" % ("on" if i["gil_enabled"] else "off")
                        if i["free_threading"] else "no"))
    lines.append(row % ("free lists", "on" if i["freelists"] else "off"))
    lines.append(row % ("immortal objects", _yes(i["immortal_objects"])))
    p = r["pymalloc"]
    if p is not None:
        if p.get("enabled"):
            lines.append(row % ("pymalloc now", "%d arenas (%d highwater, %d reclaimed), %d pools "
                                "in use, %d free, %d blocks in use, %s bytes in blocks"
                                % (p["arenas"]["current"], p["arenas"]["highwater"],
                                   p["arenas"]["reclaimed"], p["pools_in_use"], p["free_pools"],
                                   p["blocks_in_use"],
                                   "{:,}".format(p["bytes_in_allocated_blocks"]))))
        else:
            lines.append(row % ("pymalloc now", "no figures: %s" % p.get("reason")))
    lines.append("")
    lines.append("Debug symbols")
    for label, s in (("interpreter", r["debug_symbols"]["interpreter"]),
                     ("module", r["debug_symbols"]["module"])):
        if s is None:
            continue
        where = {"in the file": "yes, in the file",
                 "separate file": "yes, in %s" % s["separate_debug_file"],
                 "none": "none"}.get(s["verdict"], s["verdict"])
        if s["error"]:
            where += " (%s)" % s["error"]
        lines.append(row % ("%s %s" % (label, os.path.basename(s["path"])), where))
    lines.append("")
    w = r["watchpoints"]
    lines.append("Hardware watchpoints  %s" % (
        "allowed (a write watchpoint counted %d of %d writes)" % (w["hits"], w["writes"])
        if w["allowed"] else "not available: %s" % (w["error"] or "unknown")))
    lines.append(row % ("perf_event_paranoid", w["perf_event_paranoid"]))
    v = r["valgrind"]
    lines.append("Valgrind  %s" % ("%s (%s)" % (v["version"], v["path"]) if v["present"]
                                   else "not installed"))
    lines.append(row % ("engine built with its headers", _yes(v["engine_has_valgrind_headers"])))
    fp = r["frame_pointers"]
    sample = fp["running_code_sample"]
    lines.append("Frame pointers  interpreter: %s%s" % (
        fp["interpreter"] or "unknown",
        " (%d of %d sampled functions set one up)" % (sample["with_frame_pointer"],
                                                       sample["checked"]) if sample else ""))
    if fp.get("module") is not None or r["debug_symbols"]["module"] is not None:
        lines.append(row % ("module", fp.get("module") or "unknown"))
    d = r["libdw"]
    if d["engine_uses_it"] is True:
        lines.append("libdw  %s, in use (file:line through libdw; stacks by cached CFI rules)"
                     % (d["library"] or "libdw.so.1"))
    elif d["engine_uses_it"] is False:
        lines.append("libdw  not in use: %s" % (d.get("why_not") or "not found"))
        lines.append(row % ("instead", "pyelftools %s for file:line; the compiler's unwinder"
                            % d["pyelftools"] if d.get("pyelftools")
                            else "nothing: pyelftools is not installed"))
    else:
        lines.append("libdw  %s; engine unknown" % (d["library"] or "not found"))
    lines.append("")
    if r["advice"]:
        lines.append("What to do to get more")
        for tip in r["advice"]:
            lines.append("  - " + tip)
    else:
        lines.append("Nothing to add: this machine offers everything refhound can use.")
    return "\n".join(lines) + "\n"
