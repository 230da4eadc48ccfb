"""Small memcheck XML documents written by hand, for the cases a real run
does not give on demand: a process killed mid-report, a vfork child writing
into its parent's file, a leak search refhound did not mark, records at exit.
The layout is memcheck's (protocol 4): top-level elements from column 0,
nested ones indented."""
import json

HEAD = """<?xml version="1.0"?>

<valgrindoutput>

<protocolversion>4</protocolversion>
<protocoltool>memcheck</protocoltool>

<preamble>
  <line>Memcheck, a memory error detector</line>
</preamble>

<pid>%(pid)d</pid>
<ppid>%(ppid)d</ppid>
<tool>memcheck</tool>

<args>
  <vargv>
    <exe>/usr/bin/valgrind.bin</exe>
  </vargv>
  <argv>
    <exe>%(exe)s</exe>
%(args)s  </argv>
</args>

"""

RUNNING = """<status>
  <state>RUNNING</state>
  <time>00:00:00:00.100 </time>
</status>

"""

FINISHED = """<status>
  <state>FINISHED</state>
  <time>00:00:00:05.000 </time>
</status>

"""

END = "</valgrindoutput>\n\n"

USER_FRAME = dict(ip="0x1234", obj="/home/me/ext.so", fn="make_thing", dir="/home/me",
                  file="ext.c", line=42)
MALLOC = dict(ip="0x48417B4", obj="/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so",
              fn="malloc")
LIBPYTHON = dict(ip="0x49F95A1", obj="/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
                 fn="PyList_New", dir="/build/Python-3.11.7/Objects", file="listobject.c",
                 line=160)


def head(pid=100, ppid=1, exe="/usr/bin/python3", args=(), running=True):
    """A process's header; a vfork child's (running=False) ends at <args>."""
    text = HEAD % {"pid": pid, "ppid": ppid, "exe": exe,
                   "args": "".join("    <arg>%s</arg>\n" % a for a in args)}
    return text + RUNNING if running else text


def message(text):
    return "<clientmsg>\n  <tid>1</tid>\n  <text>%s\n  </text>\n</clientmsg>\n" % text


def marker(**fields):
    return message("refhound:" + json.dumps(fields))


def frame(ip, obj=None, fn=None, dir=None, file=None, line=None):
    out = ["    <frame>\n", "      <ip>%s</ip>\n" % ip]
    for tag, value in (("obj", obj), ("fn", fn), ("dir", dir), ("file", file), ("line", line)):
        if value is not None:
            out.append("      <%s>%s</%s>\n" % (tag, value, tag))
    out.append("    </frame>\n")
    return "".join(out)


def stack(frames):
    return "  <stack>\n" + "".join(frame(**f) for f in frames) + "  </stack>\n"


def leak(unique, blocks, nbytes, frames, kind="Leak_DefinitelyLost", record=(1, 1)):
    what = {"Leak_DefinitelyLost": "definitely lost", "Leak_IndirectlyLost": "indirectly lost",
            "Leak_PossiblyLost": "possibly lost",
            "Leak_StillReachable": "still reachable"}[kind]
    return ("<error>\n  <unique>0x%x</unique>\n  <tid>1</tid>\n  <kind>%s</kind>\n"
            "  <xwhat>\n    <text>%d bytes in %d blocks are %s in loss record %d of %d</text>\n"
            "    <leakedbytes>%d</leakedbytes>\n    <leakedblocks>%d</leakedblocks>\n"
            "  </xwhat>\n%s</error>\n"
            % (unique, kind, nbytes, blocks, what, record[0], record[1], nbytes, blocks,
               stack(frames)))


def error(unique, kind, what, frames, aux=(), suppression=None):
    """aux: (auxwhat text, frames) pairs, in order."""
    body = ["<error>\n  <unique>0x%x</unique>\n  <tid>1</tid>\n  <kind>%s</kind>\n"
            "  <what>%s</what>\n" % (unique, kind, what), stack(frames)]
    for text, aux_frames in aux:
        body.append("  <auxwhat>%s</auxwhat>\n" % text)
        if aux_frames:
            body.append(stack(aux_frames))
    if suppression is not None:
        body.append("  <suppression>\n    <sname>insert_a_suppression_name_here</sname>\n"
                    "    <skind>Memcheck:%s</skind>\n    <rawtext>\n<![CDATA[\n%s\n]]>\n"
                    "    </rawtext>\n  </suppression>\n" % (kind, suppression))
    body.append("</error>\n")
    return "".join(body)


def counts(pairs):
    return ("<errorcounts>\n" + "".join(
        "  <pair>\n    <count>%d</count>\n    <unique>0x%x</unique>\n  </pair>\n" % (c, u)
        for u, c in pairs) + "</errorcounts>\n\n")


def write(tmp_path, text, name="memcheck.100.xml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def suppcounts(pairs):
    """<suppcounts>: (name, count) pairs, as memcheck writes them at exit."""
    return ("<suppcounts>\n" + "".join(
        "  <pair>\n    <count>%d</count>\n    <name>%s</name>\n  </pair>\n" % (c, n)
        for n, c in pairs) + "</suppcounts>\n\n")
