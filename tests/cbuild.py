"""Tiny helper to build one-file C extension modules for tests and the bug zoo.

No pytest dependency; importable from anywhere (``sys.path`` must contain the
``tests`` directory, or import it by path).

* ``build_extension(c_file, out_dir, python=...)`` compiles ONE C file into an
  extension module named after the file stem, for the *target* interpreter
  (its include directory and EXT_SUFFIX are obtained by running it), with the
  system ``cc``, ``-g`` and the requested ``-O`` level.  Results are cached: a
  stamp file next to the .so records the command line and the sources.
  A ``.cpp`` file is compiled as C++ (``$CXX``, default ``c++``); ``libraries``
  are shared libraries built first and linked in (found next to the module).
* ``parse_case(c_file)`` reads the bug-zoo ground truth from a C file
  (``zoo-kind:``, ``zoo-expect:``, ``zoo-description:`` header lines, the
  optional ``zoo-native:`` and ``zoo-library:`` lines, and the one
  ``/* @culprit */`` marker, and the optional ``/* @allocation */`` one);
  see tests/zoo/README.md.
* ``build_case(case, out_dir, ...)`` builds a zoo case (its library first).
* ``zoo_cases()`` parses every ``tests/zoo/*.c`` and ``*.cpp``.
"""

import functools
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ZOO_DIR = os.path.join(HERE, "zoo")

__all__ = ["build_case", "build_extension", "interpreter_info", "parse_case", "zoo_cases",
           "ZOO_DIR"]

_PROBE = (
    "import sysconfig, json, sys\n"
    "paths = sysconfig.get_paths()\n"
    "print(json.dumps({\n"
    "  'executable': sys.executable,\n"
    "  'version': list(sys.version_info[:3]),\n"
    "  'include': paths.get('include'),\n"
    "  'platinclude': paths.get('platinclude'),\n"
    "  'ext_suffix': sysconfig.get_config_var('EXT_SUFFIX'),\n"
    "  'py_debug': bool(sysconfig.get_config_var('Py_DEBUG')),\n"
    "  'soabi': sysconfig.get_config_var('SOABI'),\n"
    "}))\n"
)


@functools.lru_cache(maxsize=None)
def interpreter_info(python=sys.executable):
    """Ask the target interpreter for its include dirs and EXT_SUFFIX."""
    try:
        proc = subprocess.run([python, "-I", "-c", _PROBE],
                              capture_output=True, text=True, check=False)
    except OSError as exc:
        raise RuntimeError("cannot run interpreter %r: %s" % (python, exc))
    if proc.returncode != 0:
        raise RuntimeError("interpreter %r failed to report its sysconfig:\n%s"
                           % (python, proc.stderr))
    info = json.loads(proc.stdout)
    if not info.get("ext_suffix") or not info.get("include"):
        raise RuntimeError("interpreter %r has no EXT_SUFFIX/include dir: %r"
                           % (python, info))
    return info


def _macro_flag(macro):
    if isinstance(macro, str):
        return "-D" + macro
    name, value = macro
    return "-D%s" % name if value is None else "-D%s=%s" % (name, value)


def build_extension(c_file, out_dir, python=sys.executable, opt="-O0",
                    extra_sources=(), include_dirs=(), define_macros=(),
                    extra_cflags=(), libraries=()):
    """Compile ``c_file`` (plus ``extra_sources``) into an extension module.

    The module is named after the file stem and gets the target
    interpreter's EXT_SUFFIX (``new_object.cpython-311d-x86_64-linux-gnu.so``
    for a debug 3.11).  ``define_macros`` items are ``"NAME"``,
    ``("NAME", None)`` or ``("NAME", "VALUE")``.  ``libraries``: names of
    shared libraries already built into ``out_dir`` (``lib<name>.so``) to
    link, found at run time next to the module.  Returns the path of the .so.
    Raises RuntimeError with the compiler's output when compilation fails.
    """
    c_file = os.path.abspath(c_file)
    sources = [c_file] + [os.path.abspath(s) for s in extra_sources]
    info = interpreter_info(python)
    stem = os.path.splitext(os.path.basename(c_file))[0]
    os.makedirs(out_dir, exist_ok=True)
    so_path = os.path.join(os.path.abspath(out_dir), stem + info["ext_suffix"])
    stamp_path = so_path + ".stamp"

    if not re.fullmatch(r"-O[0-3sgz]?|-Ofast", opt):
        raise ValueError("bad optimisation flag %r" % (opt,))
    incs = [info["include"]]
    if info.get("platinclude") and info["platinclude"] not in incs:
        incs.append(info["platinclude"])
    incs = [os.path.abspath(d) for d in include_dirs] + incs
    cc = _compiler(c_file)
    flags = (["-g", opt, "-fPIC", "-shared", "-Wall"]
             + list(extra_cflags) + case_cflags(c_file)
             + ["-I" + d for d in incs]
             + [_macro_flag(m) for m in define_macros])
    links, libs = [], []
    for name in libraries:
        links += ["-L" + os.path.dirname(so_path), "-l" + name, "-Wl,-rpath,$ORIGIN"]
        libs.append(os.path.join(os.path.dirname(so_path), "lib%s.so" % name))
    stamp = {"cmd": [cc] + flags + sources + links, "python": info["executable"],
             "ext_suffix": info["ext_suffix"]}

    if _up_to_date(so_path, stamp_path, sources + libs, stamp):
        return so_path

    # Build into a temporary file, then rename: safe against concurrent builds
    # and never leaves a half-written module behind.
    fd, tmp_so = tempfile.mkstemp(prefix="." + stem + ".", suffix=".so.tmp",
                                  dir=os.path.dirname(so_path))
    os.close(fd)
    cmd = [cc] + flags + sources + ["-o", tmp_so] + links
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        os.unlink(tmp_so)
        raise RuntimeError("cannot run the C compiler %r: %s" % (cc, exc))
    if proc.returncode != 0:
        os.unlink(tmp_so)
        raise RuntimeError("compiling %s failed (exit %d)\ncommand: %s\n%s%s"
                           % (c_file, proc.returncode, shlex.join(cmd),
                              proc.stdout, proc.stderr))
    os.replace(tmp_so, so_path)
    tmp_stamp = stamp_path + ".%d.tmp" % os.getpid()
    with open(tmp_stamp, "w") as fh:
        json.dump(stamp, fh, indent=1)
    os.replace(tmp_stamp, stamp_path)
    return so_path


def _compiler(c_file):
    if c_file.endswith(".cpp"):
        return os.environ.get("CXX", "c++")
    return os.environ.get("CC", "cc")


def build_case(case, out_dir, python=sys.executable, opt="-O0", extra_cflags=()):
    """Build a zoo case into out_dir: its shared library first (the same file
    compiled with ZOO_LIBRARY defined, into lib<name>.so) when it names one."""
    libraries = []
    if case.get("library"):
        name = case["library"]
        info = interpreter_info(python)
        os.makedirs(out_dir, exist_ok=True)
        lib = os.path.join(os.path.abspath(out_dir), "lib%s.so" % name)
        cmd = ([_compiler(case["path"]), "-g", opt, "-fPIC", "-shared", "-Wall"]
               + list(extra_cflags) + ["-DZOO_LIBRARY", "-I" + info["include"], case["path"]])
        stamp_path = lib + ".stamp"
        if not _up_to_date(lib, stamp_path, [case["path"]], {"cmd": cmd}):
            fd, tmp = tempfile.mkstemp(prefix=".lib" + name + ".", suffix=".so.tmp",
                                       dir=os.path.dirname(lib))
            os.close(fd)
            proc = subprocess.run(cmd + ["-o", tmp], capture_output=True, text=True)
            if proc.returncode != 0:
                os.unlink(tmp)
                raise RuntimeError("compiling the library of %s failed\ncommand: %s\n%s%s"
                                   % (case["path"], shlex.join(cmd), proc.stdout, proc.stderr))
            os.replace(tmp, lib)
            with open(stamp_path, "w") as fh:
                json.dump({"cmd": cmd}, fh)
        libraries.append(name)
    return build_extension(case["path"], out_dir, python=python, opt=opt, libraries=libraries,
                           extra_cflags=extra_cflags)


def case_cflags(c_file):
    """Compiler flags a C file asks for in a `zoo-cflags:` header line (a zoo
    case built without -g says `-g0`)."""
    with open(c_file) as fh:
        for n, line in enumerate(fh):
            if n >= 80:
                break
            m = _FIELD_RE.match(line)
            if m and m.group(1) == "cflags":
                return shlex.split(m.group(2))
    return []


def _up_to_date(so_path, stamp_path, sources, stamp):
    try:
        so_mtime = os.stat(so_path).st_mtime_ns
        with open(stamp_path) as fh:
            old = json.load(fh)
    except (OSError, ValueError):
        return False
    if old != json.loads(json.dumps(stamp)):
        return False
    try:
        return all(os.stat(s).st_mtime_ns < so_mtime for s in sources)
    except OSError:
        return False


# --------------------------------------------------------------------------
# Ground truth of the bug zoo

_CULPRIT_RE = re.compile(r"/\*\s*@culprit\s*\*/")
_ALLOCATION_RE = re.compile(r"/\*\s*@allocation\s*\*/")
_FIELD_RE = re.compile(
    r"^\s*\*?\s*zoo-(kind|expect-immortal|expect|description|native|library|cflags)\s*:\s*(.*?)\s*$")
_EXPECT_KEYS = ("refs", "objects", "blocks")
_NATIVE_KEYS = ("blocks", "bytes")


def _strip_c(text):
    """Blank out comments and string/char literals, keeping newlines and
    column positions, so braces and names can be scanned reliably."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c)
            i = j
        elif c == "#" and (i == 0 or text[i - 1] == "\n"):
            # preprocessor line (with continuations)
            j = i
            while True:
                k = text.find("\n", j)
                if k < 0:
                    k = n
                    break
                if text[k - 1] == "\\":
                    j = k + 1
                    continue
                break
            out.append(re.sub(r"[^\n]", " ", text[i:k]))
            i = k
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _enclosing_function(text, line):
    """Name of the C function whose body contains 1-based ``line``, or None
    (e.g. for a line inside a static type definition)."""
    code = _strip_c(text)
    depth = 0
    head_start = 0            # start of the current top-level declaration
    current = None            # function whose body we are in (depth >= 1)
    lineno = 1
    for pos, c in enumerate(code):
        if c == "\n":
            lineno += 1
            continue
        if lineno > line and depth == 0:
            break
        if c == "{":
            if depth == 0:
                head = code[head_start:pos]
                m = re.search(r"(\w+)\s*\([^;={}]*\)\s*$", head)
                current = m.group(1) if m and "=" not in head else None
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                if lineno >= line:
                    return current
                current = None
                head_start = pos + 1
        elif c == ";" and depth == 0:
            head_start = pos + 1
        if lineno == line and depth > 0 and c not in " \t":
            return current
    return None


def parse_case(c_file):
    """Read the ground truth of one zoo case from its C source."""
    path = os.path.abspath(c_file)
    with open(path) as fh:
        text = fh.read()
    lines = text.splitlines()
    fields = {}
    for ln in lines[:80]:
        m = _FIELD_RE.match(ln)
        if m and m.group(1) not in fields:
            fields[m.group(1)] = m.group(2)
    missing = [k for k in ("kind", "expect", "description") if k not in fields]
    if missing:
        raise ValueError("%s: missing zoo-%s header line" % (path, missing[0]))
    expect = {}
    for item in fields["expect"].split():
        key, sep, value = item.partition("=")
        if not sep or key not in _EXPECT_KEYS:
            raise ValueError("%s: bad zoo-expect item %r" % (path, item))
        expect[key] = float(value)
    if set(expect) != set(_EXPECT_KEYS):
        raise ValueError("%s: zoo-expect must give refs, objects and blocks"
                         % path)
    # What differs from 3.12 on, where small ints, None and static types
    # are immortal and their refcounts do not move (optional, partial).
    expect_immortal = dict(expect)
    for item in fields.get("expect-immortal", "").split():
        key, sep, value = item.partition("=")
        if not sep or key not in _EXPECT_KEYS:
            raise ValueError("%s: bad zoo-expect-immortal item %r" % (path, item))
        expect_immortal[key] = float(value)
    native = {"blocks": 0.0, "bytes": 0.0}
    for item in fields.get("native", "").split():
        key, sep, value = item.partition("=")
        if not sep or key not in _NATIVE_KEYS:
            raise ValueError("%s: bad zoo-native item %r" % (path, item))
        native[key] = float(value)
    culprits = [i + 1 for i, ln in enumerate(lines) if _CULPRIT_RE.search(ln)]
    if len(culprits) > 1:
        raise ValueError("%s: more than one @culprit marker (lines %s)"
                         % (path, culprits))
    culprit_line = culprits[0] if culprits else None
    # Where the leaked block is made, when that is not the culprit line (an
    # allocation wrapper, an extra Py_INCREF on a new object): what a checker
    # that sees only blocks (memcheck) can name.
    allocations = [i + 1 for i, ln in enumerate(lines) if _ALLOCATION_RE.search(ln)]
    if len(allocations) > 1:
        raise ValueError("%s: more than one @allocation marker (lines %s)"
                         % (path, allocations))
    return {
        "name": os.path.splitext(os.path.basename(path))[0],
        "path": path,
        "culprit_line": culprit_line,
        "culprit_function": (_enclosing_function(text, culprit_line)
                             if culprit_line else None),
        "allocation_line": allocations[0] if allocations else culprit_line,
        "expect": expect,
        "expect_immortal": expect_immortal,
        "native": native,
        "library": fields.get("library") or None,
        "kind": fields["kind"],
        "description": fields["description"],
        "cflags": shlex.split(fields.get("cflags", "")),
    }


def zoo_cases(zoo_dir=ZOO_DIR):
    """Ground truth of every ``tests/zoo/*.c`` and ``*.cpp``, sorted by name."""
    paths = glob.glob(os.path.join(zoo_dir, "*.c")) + glob.glob(os.path.join(zoo_dir, "*.cpp"))
    return sorted((parse_case(p) for p in paths), key=lambda c: c["name"])


if __name__ == "__main__":
    for case in zoo_cases():
        print(json.dumps(case))
