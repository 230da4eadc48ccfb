"""Source lines of native frames without libdw: DWARF read with pyelftools.

Where the system has no libdw.so.1 the engine names a frame by its module,
its ELF symbol and its address in the module's file (symbols.c); the
binding (refhound._core.symbolize) then asks `resolve` here for the frames
of that address, innermost first, as libdw would give them: the line from
the DWARF line table, and for code inlined there (Py_INCREF from
CPython's headers, a static helper) one frame per inlined call with the
call site as the caller's line.

The DWARF is read in a helper process (`python -m refhound._dwarf`,
started on first use, one per process that asks, ended when its pipe
closes): parsing an interpreter's debug information makes hundreds of
thousands of Python objects, which must not live in the process under
check, where every heap walk would meet them.  The helper keeps what it
read per module file (the unit of each address range from .debug_aranges
or the units' own ranges, each unit's line table, the DIEs pyelftools
parsed); this process keeps only the answers.  Where the helper cannot
start, the same code runs here.  Debug information split off into
/usr/lib/debug (by build-id or .gnu_debuglink) is found as gdb finds it.
Nothing here raises: a file that cannot be read gives None, with a
reason, and the engine's frame stands.
"""
import bisect
import json
import os
import subprocess
import sys
import threading

try:
    from elftools.elf.elffile import ELFFile
except ImportError:             # pyelftools is a dependency; a broken install degrades
    ELFFile = None

DEBUG_ROOT = "/usr/lib/debug"
# Where a concrete function can sit other than the unit's top level (a C++
# namespace); a class holds only declarations (the definitions are at the
# top, with DW_AT_specification).
_CONTAINERS = ("DW_TAG_namespace", "DW_TAG_module")
_SCOPES = ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine", "DW_TAG_lexical_block")

_modules = {}                   # (path, inode, mtime) => _Module or a reason string
_answers = {}                   # (path, address) => [frame] or None
_reasons = {}                   # path => why it gives no lines
_lock = threading.Lock()
_helper = None                  # (pid that started it, Popen), or (pid, None): cannot start


def available():
    """Is pyelftools importable?"""
    return ELFFile is not None


def missing_reason():
    return "pyelftools is not installed (pip install pyelftools)"


def resolve(module, address, function=None, offset=0):
    """The frames at `address` (in the ELF file `module`), innermost first,
    as dicts with module, function, file, line, inlined, offset and reason;
    None when the file has no usable DWARF (`reason` says why)."""
    key = (module, address)
    with _lock:
        if key in _answers:
            return _answers[key]
        answer = _ask(module, address, function, offset)
        if answer is None:
            frames, why = _resolve_here(module, address, function, offset)
        else:
            frames, why = answer
        _answers[key] = frames
        if why:
            _reasons[module] = why
        return frames


def reason(module):
    """Why `module` gave no lines, or None."""
    return _reasons.get(module)


def forget():
    """Drop every cached answer and the helper (modules may have changed)."""
    global _helper
    with _lock:
        _answers.clear()
        _reasons.clear()
        if _helper is not None and _helper[1] is not None and _helper[0] == os.getpid():
            _close(_helper[1])
        _helper = None
        for m in _modules.values():
            if not isinstance(m, str):
                m.close()
        _modules.clear()


# ---- the helper process --------------------------------------------------------

def _ask(module, address, function, offset):
    """(frames, reason) from the helper; None when there is no helper."""
    global _helper
    if _helper is None or _helper[0] != os.getpid():   # first use, or a forked child
        _helper = (os.getpid(), _start())
    proc = _helper[1]
    if proc is None:
        return None
    try:
        proc.stdin.write(json.dumps([module, address, function, offset]) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        out = json.loads(line)
        return out["frames"], out["reason"]
    except (OSError, ValueError, KeyError, TypeError):
        _close(proc)
        _helper = (os.getpid(), None)
        return None


def _start():
    if ELFFile is None:
        return None
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for var in ("PYTHONSTARTUP", "PYTHONMALLOC", "PYTHONTRACEMALLOC", "PYTHONDEVMODE",
                "LD_PRELOAD"):
        env.pop(var, None)
    python = sys.executable
    if not python or not os.access(python, os.X_OK):
        return None
    try:
        return subprocess.Popen([python, "-m", "refhound._dwarf"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                text=True, close_fds=True, cwd="/")
    except Exception:           # no program may be started here: read in this process
        return None


def _close(proc):
    try:
        proc.stdin.close()
        proc.wait(timeout=5)
    except Exception:
        try:
            proc.kill()
        except Exception:
            pass


def serve(stdin, stdout):
    """The helper's loop: one JSON request [module, address, function,
    offset] per line, one JSON answer {frames, reason} per line."""
    for line in stdin:
        try:
            module, address, function, offset = json.loads(line)
            frames, why = _resolve_here(module, address, function, offset)
        except Exception as e:                  # never die on a request
            frames, why = None, "cannot read DWARF: %s" % e
        stdout.write(json.dumps({"frames": frames, "reason": why}) + "\n")
        stdout.flush()


# ---- reading DWARF ---------------------------------------------------------------

def _resolve_here(module, address, function, offset):
    """(frames or None, reason or None), read in this process."""
    try:
        frames = _resolve(module, address, function, offset)
    except Exception as e:      # a DWARF shape we do not know: the symbol stands
        return None, "cannot read the DWARF of %s: %s" % (module, e)
    if frames is None:
        m = _open(module)
        return None, m if isinstance(m, str) else "no DWARF line for this address"
    return frames, None


def _resolve(module, address, function, offset):
    m = _open(module)
    if isinstance(m, str):
        return None
    cu = m.unit_at(address)
    if cu is None:
        return None
    file, line = m.line_at(cu, address)
    chain = m.scopes_at(cu, address)
    out = []
    for die in reversed(chain):                 # innermost first
        inlined = die.tag == "DW_TAG_inlined_subroutine"
        name = _die_name(die) or (function if not inlined else None)
        out.append({"module": module, "function": name, "file": file, "line": line,
                    "inlined": inlined, "offset": offset, "reason": None})
        if not inlined:
            break
        file, line = m.call_site(cu, die)
    if not out:
        out.append({"module": module, "function": function, "file": file, "line": line,
                    "inlined": False, "offset": offset, "reason": None})
    return out


def _open(path):
    try:
        st = os.stat(path)
    except OSError as e:
        return "cannot read %s: %s" % (path, e.strerror)
    key = (path, st.st_ino, st.st_mtime_ns)
    m = _modules.get(key)
    if m is None:
        if ELFFile is None:
            m = missing_reason()
        else:
            try:
                m = _Module(path)
            except Exception as e:
                m = "cannot read the DWARF of %s: %s" % (path, e)
        _modules[key] = m
    return m


def _die_name(die):
    seen = 0
    while die is not None and seen < 8:
        attr = die.attributes.get("DW_AT_name")
        if attr is not None:
            return _text(attr.value)
        nxt = None
        for ref in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if ref in die.attributes:
                nxt = die.get_DIE_from_attribute(ref)
                break
        die, seen = nxt, seen + 1
    return None


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def _build_id(elf):
    for section in elf.iter_sections():
        if section.header.sh_type != "SHT_NOTE":
            continue
        for note in section.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return note["n_desc"]
    return None


def _debug_file(path, elf):
    """The separate debug file of a stripped module, or None."""
    build_id = _build_id(elf)
    candidates = []
    if build_id and len(build_id) > 2:
        candidates.append(os.path.join(DEBUG_ROOT, ".build-id", build_id[:2],
                                       build_id[2:] + ".debug"))
    link = elf.get_section_by_name(".gnu_debuglink")
    if link is not None:
        name = link.data().split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        here = os.path.dirname(os.path.realpath(path))
        candidates += [os.path.join(here, name), os.path.join(here, ".debug", name),
                       DEBUG_ROOT + os.path.join(here, name)]
    for c in candidates:
        if os.path.isfile(c) and os.path.realpath(c) != os.path.realpath(path):
            return c
    return None


class _Module:
    """One ELF file's DWARF, read lazily."""

    def __init__(self, path):
        self.files = [open(path, "rb")]
        elf = ELFFile(self.files[0])
        if not elf.has_dwarf_info() or elf.get_section_by_name(".debug_info") is None:
            debug = _debug_file(path, elf)
            if debug is None:
                self.close()
                raise ValueError("no DWARF debug information for this module")
            self.files.append(open(debug, "rb"))
            elf = ELFFile(self.files[1])
        self.dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
        self.little_endian = elf.little_endian
        self._line_data = None                  # .debug_line, read on first use
        self._aranges = self.dwarf.get_aranges()
        self._unit_ranges = None                # [(low, high, cu offset)], sorted
        self._units = {}                        # cu offset => CompileUnit
        self._lines = {}                        # cu offset => (addresses, rows)

    def close(self):
        for f in self.files:
            f.close()

    # ---- address => compilation unit ----

    def unit_at(self, address):
        offset = None
        if self._aranges is not None:
            try:
                offset = self._aranges.cu_offset_at_addr(address)
            except Exception:
                offset = None
        if offset is None:
            offset = self._unit_by_ranges(address)
        if offset is None:
            return None
        cu = self._units.get(offset)
        if cu is None:
            cu = self._units[offset] = self.dwarf.get_CU_at(offset)
        return cu

    def _unit_by_ranges(self, address):
        if self._unit_ranges is None:
            spans = []
            for cu in self.dwarf.iter_CUs():
                self._units.setdefault(cu.cu_offset, cu)
                for lo, hi in self.ranges(cu, cu.get_top_DIE()):
                    spans.append((lo, hi, cu.cu_offset))
            spans.sort()
            self._unit_ranges = spans
        spans = self._unit_ranges
        i = bisect.bisect_right(spans, (address, float("inf"), 0)) - 1
        for lo, hi, offset in reversed(spans[max(0, i - 63):i + 1]):
            if lo <= address < hi:
                return offset
        return None

    # ---- ranges of a DIE ----

    def ranges(self, cu, die):
        attrs = die.attributes
        low = attrs.get("DW_AT_low_pc")
        high = attrs.get("DW_AT_high_pc")
        if low is not None and high is not None:
            lo = low.value
            hi = high.value
            if high.form not in ("DW_FORM_addr", "DW_FORM_addrx", "DW_FORM_addrx1",
                                 "DW_FORM_addrx2", "DW_FORM_addrx3", "DW_FORM_addrx4"):
                hi = lo + hi                    # a length
            return [(lo, hi)]
        rng = attrs.get("DW_AT_ranges")
        if rng is None:
            return []
        lists = self.dwarf.range_lists()
        if lists is None:
            return []
        top = cu.get_top_DIE()
        base_attr = top.attributes.get("DW_AT_low_pc")
        base = base_attr.value if base_attr is not None else 0
        out = []
        for entry in lists.get_range_list_at_offset(rng.value, cu=cu):
            if hasattr(entry, "base_address"):
                base = entry.base_address
            elif entry.is_absolute:
                out.append((entry.begin_offset, entry.end_offset))
            else:
                out.append((base + entry.begin_offset, base + entry.end_offset))
        return out

    def _contains(self, cu, die, address):
        return any(lo <= address < hi for lo, hi in self.ranges(cu, die))

    # ---- the chain of scopes at an address ----

    def scopes_at(self, cu, address):
        """The subprogram holding `address` and the inlined subroutines in
        it down to the innermost, outermost first."""
        chain = []
        die = cu.get_top_DIE()
        depth = 0
        while die is not None and depth < 64:
            depth += 1
            nxt = None
            for child in die.iter_children():
                tag = child.tag
                if tag in _SCOPES:
                    if self._contains(cu, child, address):
                        nxt = child
                        break
                elif tag in _CONTAINERS and child.has_children and not chain:
                    found = self._find_in_container(cu, child, address)
                    if found is not None:
                        nxt = found
                        break
            if nxt is None:
                break
            if nxt.tag != "DW_TAG_lexical_block":
                chain.append(nxt)
            die = nxt
        return chain

    def _find_in_container(self, cu, die, address, depth=0):
        if depth > 8:
            return None
        for child in die.iter_children():
            if child.tag == "DW_TAG_subprogram" and self._contains(cu, child, address):
                return child
            if child.tag in _CONTAINERS and child.has_children:
                found = self._find_in_container(cu, child, address, depth + 1)
                if found is not None:
                    return found
        return None

    # ---- lines ----

    def _line_table(self, cu):
        table = self._lines.get(cu.cu_offset)
        if table is not None:
            return table
        prog = self.dwarf.line_program_for_CU(cu)
        rows = []
        if prog is not None:
            if self._line_data is None:
                stream = self.dwarf.debug_line_sec.stream
                stream.seek(0)
                self._line_data = stream.read()
            rows = _decode_lines(self._line_data, prog, self._file_names(cu, prog),
                                 cu.structs.address_size, self.little_endian)
        # Sorted by address; at equal addresses the last row wins, as in the
        # table (an end of sequence first, then the next sequence's start).
        order = sorted(range(len(rows)), key=lambda i: (rows[i][0], i))
        rows = [rows[i] for i in order]
        table = ([r[0] for r in rows], rows)
        self._lines[cu.cu_offset] = table
        return table

    def line_at(self, cu, address):
        addresses, rows = self._line_table(cu)
        i = bisect.bisect_right(addresses, address) - 1
        if i < 0:
            return None, 0
        _, file, line = rows[i]
        if file is None:                        # past the end of a sequence
            return None, 0
        return file, line

    def call_site(self, cu, die):
        attrs = die.attributes
        line = attrs["DW_AT_call_line"].value if "DW_AT_call_line" in attrs else 0
        file = None
        if "DW_AT_call_file" in attrs:
            prog = self.dwarf.line_program_for_CU(cu)
            if prog is not None:
                file = self._file_names(cu, prog)(attrs["DW_AT_call_file"].value)
        return file, line

    def _file_names(self, cu, prog):
        """index => full path, for the file indexes of this unit's line table."""
        cache = getattr(prog, "_rh_names", None)
        if cache is not None:
            return cache
        version = prog["version"]
        top = cu.get_top_DIE()
        comp_dir = top.attributes.get("DW_AT_comp_dir")
        comp_dir = _text(comp_dir.value) if comp_dir is not None else ""
        dirs = [_text(d) for d in prog["include_directory"]]
        files = prog["file_entry"]
        memo = {}

        def name(index):
            if index in memo:
                return memo[index]
            k = index if version >= 5 else index - 1
            path = None
            if 0 <= k < len(files):
                entry = files[k]
                path = _text(entry.name)
                d = entry.dir_index
                if version >= 5:
                    directory = dirs[d] if 0 <= d < len(dirs) else ""
                else:
                    directory = dirs[d - 1] if 0 < d <= len(dirs) else comp_dir
                if not os.path.isabs(path) and directory:
                    path = os.path.join(directory, path)
                if not os.path.isabs(path) and comp_dir:
                    path = os.path.join(comp_dir, path)
            memo[index] = path
            return path

        prog._rh_names = name
        return name


def _decode_lines(data, prog, names, address_size, little_endian):
    """The rows (address, file path or None at an end of sequence, line) of
    one line-number program (DWARF 2-5, section 6.2), decoded straight from
    the section's bytes: pyelftools' own decoder keeps a state object per
    row, several times slower on an interpreter's large units."""
    hdr = prog.header
    minlen = hdr["minimum_instruction_length"]
    line_base = hdr["line_base"]
    line_range = hdr["line_range"]
    opbase = hdr["opcode_base"]
    std_lengths = hdr["standard_opcode_lengths"]
    order = "little" if little_endian else "big"
    const_add = ((255 - opbase) // line_range) * minlen
    rows = []
    append = rows.append
    pos, end = prog.program_start_offset, prog.program_end_offset
    address, file, line = 0, 1, 1
    while pos < end:
        op = data[pos]
        pos += 1
        if op >= opbase:                        # special opcode: one row
            adj = op - opbase
            address += (adj // line_range) * minlen
            line += line_base + adj % line_range
            append((address, names(file), line))
            continue
        if op == 0:                             # extended
            n = shift = 0
            while True:
                b = data[pos]
                pos += 1
                n |= (b & 0x7f) << shift
                shift += 7
                if b < 0x80:
                    break
            sub = data[pos] if n else 0
            if sub == 1:                        # end_sequence
                append((address, None, 0))
                address, file, line = 0, 1, 1
            elif sub == 2:                      # set_address
                address = int.from_bytes(data[pos + 1:pos + 1 + address_size], order)
            pos += n
            continue
        if op == 1:                             # copy
            append((address, names(file), line))
            continue
        if op == 8:                             # const_add_pc
            address += const_add
            continue
        if op == 9:                             # fixed_advance_pc
            address += int.from_bytes(data[pos:pos + 2], order)
            pos += 2
            continue
        if op in (6, 7, 10, 11):                # flags without operands
            continue
        # Opcodes with LEB128 operands: 2 advance_pc, 3 advance_line
        # (signed), 4 set_file, 5 set_column, 12 set_isa, unknown ones.
        count = std_lengths[op - 1] if op - 1 < len(std_lengths) else 0
        value = 0
        for _ in range(count):
            value = shift = 0
            while True:
                b = data[pos]
                pos += 1
                value |= (b & 0x7f) << shift
                shift += 7
                if b < 0x80:
                    break
            if op == 3 and b & 0x40:
                value -= 1 << shift
        if op == 2:
            address += value * minlen
        elif op == 3:
            line += value
        elif op == 4:
            file = value
    return rows


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
