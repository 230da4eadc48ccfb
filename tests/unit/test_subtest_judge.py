"""Naming the leaking subtest from the rounds of per-subtest shares
(refhound._pytest_check.judge_subtests): rounds as recorded (the first
five of SHIFTED and of NOISY as they came, the rest alike) from
tests/e2e/test_pytest_screen.py's test_third_subtest_leaks under the
pytest-subtests plugin, where subtest [step] (i=2) keeps one object per call.
Each round: (refs share, blocks surviving) per subtest, i=0..4."""
import pytest

from refhound._pytest_check import judge_subtests

NAMES = ["[step] (i=%d)" % i for i in range(5)]


def rounds(*shares):
    return [[(NAMES[i], refs, blocks) for i, (refs, blocks) in enumerate(r)] for r in shares]


# A unit moved from i=2's reference share to i=1's for four rounds: every
# round's reference excess and block excess taken alone miss i=2 or name i=1.
SHIFTED = rounds(
    [(252, 5), (5, 3), (4, 3), (3, 2), (4, 2)],
    [(252, 2), (5, 2), (5, 3), (3, 3), (4, 3)],
    [(252, 4), (5, 1), (4, 3), (4, 3), (4, 2)],
    [(252, 4), (5, 1), (4, 2), (4, 3), (4, 3)],
    [(253, 4), (3, 1), (6, 3), (5, 1), (3, 2)],
    [(252, 4), (4, 3), (5, 4), (4, 3), (4, 3)],
    [(252, 3), (4, 2), (5, 3), (4, 2), (4, 3)],
    [(252, 4), (4, 3), (5, 4), (4, 2), (4, 3)],
)
# The noise of a round that lost the leak's reference (i=2 at 5 among 5, 5, 4)
NOISY = rounds(
    [(252, 6), (5, 5), (5, 4), (5, 5), (4, 5)],
    [(252, 4), (4, 4), (5, 6), (4, 5), (4, 5)],
    [(252, 3), (4, 5), (5, 5), (3, 3), (4, 3)],
    [(252, 5), (4, 4), (5, 5), (4, 4), (4, 4)],
    [(252, 4), (4, 3), (5, 4), (4, 3), (4, 4)],
    [(252, 5), (4, 3), (6, 4), (4, 4), (4, 4)],
    [(252, 3), (4, 2), (5, 3), (4, 2), (4, 2)],
    [(252, 6), (4, 5), (5, 6), (4, 5), (4, 5)],
)


@pytest.mark.parametrize("judged", [SHIFTED, NOISY], ids=["shifted", "noisy"])
def test_the_leaking_subtest_alone_is_named(judged):
    assert [name for name, _, _ in judge_subtests(judged)] == ["[step] (i=2)"]


def test_the_clean_twin_names_none():
    # the same rounds with i=2's object given back: one reference and one
    # block fewer in its share
    clean = [[(n, refs - (i == 2), blocks - (i == 2)) for i, (n, refs, blocks) in enumerate(r)]
             for r in NOISY]
    assert judge_subtests(clean) == []


def test_a_leak_of_one_block_alone_is_named():
    # a raw buffer: no reference, one block per call
    judged = rounds(*[[(252, 4), (4, 3), (4, 4 + (k % 2)), (4, 3 + (k % 2)), (4, 3)]
                      for k in range(8)])
    assert [name for name, _, _ in judge_subtests(judged)] == ["[step] (i=2)"]


def test_too_few_rounds_or_subtests_name_none():
    assert judge_subtests(NOISY[:2]) == []
    assert judge_subtests([r[:2] for r in NOISY]) == []


def test_a_neighbour_with_noisy_blocks_is_not_named():
    # As recorded: i=4's blocks outlived the others' in a few rounds
    # (together +0.67 a call, the most a clean subtest showed in 16 runs).
    judged = rounds(*[[(275, 4), (4, 2), (5, 3), (4, 2), (4, 2 + (k % 3 == 0) + (k == 4))]
                      for k in range(8)])
    assert [name for name, _, _ in judge_subtests(judged)] == ["[step] (i=2)"]

