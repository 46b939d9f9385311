"""Shards of a state machine: distinct examples under derandomize, one example-database key."""
import pytest
from hypothesis import Phase, settings, strategies as st
from hypothesis.database import InMemoryExampleDatabase
from hypothesis.stateful import RuleBasedStateMachine, rule

from harness.fuzz.shards import shard_cases, shard_seed

DRAWN = []


class Recorder(RuleBasedStateMachine):
    """Records every value it draws, so a test can compare the example sequences of two shards."""

    @rule(x=st.integers(0, 10 ** 9))
    def draw(self, x):
        DRAWN.append(x)


class FailsOnBigValues(RuleBasedStateMachine):
    @rule(x=st.integers(0, 1000))
    def draw(self, x):
        assert x < 900, "big value"


def _run(case) -> None:
    case("runTest").runTest()


def _drawn_by(case) -> list:
    DRAWN.clear()
    _run(case)
    return list(DRAWN)


CI_LIKE = settings(max_examples=20, stateful_step_count=5, derandomize=True, database=None, deadline=None)


def test_derandomized_shards_draw_different_examples_and_each_repeats_its_own():
    (_, s0), (_, s1) = shard_cases(Recorder, shards=2, profile=CI_LIKE)
    first = _drawn_by(s0)
    assert first and first == _drawn_by(s0)
    assert first != _drawn_by(s1)
    # A fresh set of cases (another process, another run) gets the same seeds.
    (_, again0), _ = shard_cases(Recorder, shards=2, profile=CI_LIKE)
    assert _drawn_by(again0) == first


def test_examples_are_split_between_shards():
    cases = list(shard_cases(Recorder, shards=3, profile=CI_LIKE))
    assert [name for name, _ in cases] == ["TestRecorderShard0", "TestRecorderShard1", "TestRecorderShard2"]
    assert {case.settings.max_examples for _, case in cases} == {6}
    (_, half), = shard_cases(Recorder, shards=1, share=0.5, profile=CI_LIKE)
    assert half.settings.max_examples == 10


def test_seeds_are_fixed_numbers():
    assert shard_seed("FifoRaft", 0) == shard_seed("FifoRaft", 0)
    assert len({shard_seed("FifoRaft", k) for k in range(8)} | {shard_seed("UnreliableRaft", 0)}) == 9


def test_a_failure_saved_by_one_shard_is_replayed_by_the_others():
    db = InMemoryExampleDatabase()
    finder = settings(max_examples=500, stateful_step_count=5, database=db, deadline=None,
                      phases=[Phase.generate, Phase.shrink])
    (_, s0), (_, s1) = shard_cases(FailsOnBigValues, shards=2, profile=finder)
    with pytest.raises(AssertionError, match="big value"):
        _run(s0)
    assert list(db.data), "the failure was not saved"
    replay_only = settings(finder, phases=[Phase.reuse])
    (_, r0), (_, r1) = shard_cases(FailsOnBigValues, shards=2, profile=replay_only)
    try:
        _run(r1)
    except AssertionError as e:
        assert "big value" in str(e)
    except BaseException as e:  # Hypothesis skips a reuse-only test that finds nothing saved
        pytest.fail(f"shard 1 did not replay shard 0's failure: {e!r}")
    else:
        pytest.fail("shard 1 did not replay shard 0's failure")


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="machine must be a RuleBasedStateMachine"):
        list(shard_cases(object))
    with pytest.raises(ValueError, match=r"share must be in \(0, 1\]"):
        list(shard_cases(Recorder, share=0))
    with pytest.raises(ValueError, match="shards must be >= 1"):
        list(shard_cases(Recorder, shards=0))
