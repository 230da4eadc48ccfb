"""The parent's view of a stopped child: its stacks, shown without refhound's frames."""
from refhound._child import format_stacks

PKG = "/site/refhound/"

DUMP = '''Thread 0x00007f0000000001 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 320 in wait
  File "worker.py", line 9 in loop

Current thread 0x00007f0000000002 (most recent call first):
  File "t.py", line 12 in spin
  File "/site/refhound/_checker.py", line 184 in _call
  File "/site/refhound/commands/check.py", line 60 in _check
  File "<frozen runpy>", line 88 in _run_code
'''


def test_stacks_without_refhounds_frames():
    assert format_stacks(DUMP, PKG) == (
        '  Thread 0x00007f0000000001:\n'
        '    File "/usr/lib/python3.11/threading.py", line 320 in wait\n'
        '    File "worker.py", line 9 in loop\n'
        '\n'
        '  Current thread 0x00007f0000000002:\n'
        '    File "t.py", line 12 in spin\n')


def test_refhounds_frames_stay_when_nothing_else_is_there():
    dump = ('Current thread 0x01 (most recent call first):\n'
            '  File "/site/refhound/_attribution.py", line 5 in leak_sites\n')
    assert format_stacks(dump, PKG) == (
        '  Current thread 0x01:\n'
        '    File "/site/refhound/_attribution.py", line 5 in leak_sites\n')


def test_no_dump():
    assert format_stacks("", PKG) == ("  (no Python stack: the target did not answer the "
                                      "signal that asks for it)\n")
