"""The event recorder (:mod:`harness.adapter.events`) on real clusters, and what the stream checker finds with it.

The recorder must be complete (the log, commit and applied index rebuilt from
a node's events are the node's own, at every step, through snapshots,
crashes, restarts and partitions), must only observe (the message trace is
the same with and without it), and must say what each event happened while
handling.  With it, the stream checker catches what lasts less than a step:
two leaders of one term, and a vote granted twice, which the step-end checker
misses on the same runs.
"""
from __future__ import annotations

import logging

import pytest

from harness.adapter import observe as compat
from harness.adapter.patching import inject
from harness.check.events import (Applied, CommitChanged, Crashed, LeaderElected, MatchRaised, Started, VoteGranted,
                                  digest)
from harness.check.invariants import SafetyChecker, SafetyViolation
from harness.check.stream import StreamHistory, dispatch
from harness.sim.cluster import Cluster
from harness.state import Entry

from tests.findings.test_stale_success_reply import TIMEOUTS, _minority_commit
from tests.scenarios._support import Watched


def _live_log(c: Cluster, node: str):
    return [Entry(e.index, e.term, digest(e.command)) for e in compat.entries(c.node(node), 0)]


def _stormy(c: Cluster, step: int) -> None:
    """Writes every step; a snapshot, a partition, a crash and a restart now and then."""
    ids = c.node_ids
    leader = c.leader()
    if leader is not None:
        c.put("k", step, via=leader)
    if step % 7 == 3 and c.up_ids():
        c.force_snapshot(c.up_ids()[step % len(c.up_ids())])
    if step % 11 == 5:
        c.isolate_node(ids[step % len(ids)])
    if step % 11 == 9:
        c.clear_all_filters()
    if step % 13 == 6 and len(c.up_ids()) == len(ids):
        c.crash(ids[(step // 13) % len(ids)])
    if step % 13 == 10:
        for n in ids:
            if not c.is_up(n):
                c.restart(n)
    c.run_for(0.25)


@pytest.mark.parametrize("seed", [1, 4])
def test_logs_and_indexes_rebuilt_from_the_events_are_the_nodes_own(seed):
    history = StreamHistory()
    applied = {}
    table = dispatch([history])
    with Cluster(3, seed=seed, record_events=True) as c:
        c.wait_leader()
        for step in range(120):
            _stormy(c, step)
            for e in c.take_events():
                for handle in table.get(type(e), ()):
                    handle(e, [])
                if isinstance(e, Applied):
                    applied[(e.node, e.incarnation)] = e.new
            for n in c.up_ids():
                key = (n, c.incarnation(n))
                assert history.logs[key] == _live_log(c, n), f"step {step}: {n}'s log"
                obj = c.node(n)
                assert history.commit.get(key) == obj.raftCommitIndex, f"step {step}: {n}'s commit index"
                assert applied.get(key) == obj.raftLastApplied, f"step {step}: {n}'s applied index"
        assert c.stats["crashes"] and c.stats["snapshots_forced"]
        assert all(k[0] in c.up_ids() for k in history.logs), "a crashed incarnation's log was kept"


# ids without "fifo"/"unreliable": conftest deselects items by those keywords (--network)
@pytest.mark.parametrize("network", ["fifo", "unreliable"], ids=["tcp_contract", "paper_network"])
def test_recording_events_does_not_change_the_trace(network):
    digests = []
    for record in (False, True):
        with Cluster(3, seed=2, network=network, record_events=record) as c:
            c.wait_leader()
            for step in range(60):
                _stormy(c, step)
            digests.append(c.trace_digest())
    assert digests[0] == digests[1]


def test_events_say_what_the_node_was_handling():
    with Cluster(3, seed=1, record_events=True) as c:
        c.wait_leader()
        c.must_put("k", 1)
        leader = c.leader()
        c.crash(leader)
        c.run_for(3)
        events = c.take_events()
    assert [type(e) for e in events[:3]] == [Started] * 3
    assert {str(e.handling) for e in events[:3]} == {"start"}
    won = [e for e in events if isinstance(e, LeaderElected)]
    assert won and all(e.handling.kind == "response_vote" and e.handling.activity == "message" for e in won)
    assert all(e.voters == ("n1", "n2", "n3") for e in won)  # the configuration the winner counted in
    votes = [e for e in events if isinstance(e, VoteGranted)]
    assert {e.handling.kind for e in votes if e.candidate != e.node} == {"request_vote"}
    assert {e.handling.activity for e in votes if e.candidate == e.node} == {"tick"}  # a candidate's own vote
    commits = [e for e in events if isinstance(e, CommitChanged) and e.node == leader]
    assert any(e.handling.activity == "tick" and e.handling.kind == "next_node_idx" for e in commits), \
        "a leader commits in the tick right after a follower's ack"
    [crash] = [e for e in events if isinstance(e, Crashed)]
    assert (crash.node, str(crash.handling)) == (leader, "harness")
    times = [e.time for e in events]
    assert times == sorted(times)


def test_a_leaders_match_index_rises_are_recorded_with_the_followers_incarnation_and_term():
    with Cluster(3, seed=1, record_events=True) as c:
        c.wait_leader()
        c.must_put("k", 1)
        c.run_for(0.5)
        leader = c.leader()
        followers = sorted(set(c.node_ids) - {leader})
        last = c.state(leader).last_index
        events = c.take_events()
    raised = [e for e in events if isinstance(e, MatchRaised)]
    assert sorted({e.follower for e in raised}) == followers
    assert all(e.node == leader and e.handling.kind == "next_node_idx" and e.follower_incarnation == 1
               and e.follower_term == e.term for e in raised)
    for f in followers:
        indexes = [e.index for e in raised if e.follower == f]
        assert indexes == sorted(set(indexes)) and indexes[-1] == last


def test_take_events_needs_record_events():
    with Cluster(3, seed=1) as c:
        with pytest.raises(RuntimeError, match="record_events=True"):
            c.take_events()


# --- what only the stream sees ------------------------------------------------------------------
def _run_both(seed: int, steps: int = 60):
    """A 3-node cluster whose leader is crashed and restarted over and over; both checkers after each step.
    Returns (stream violations, sample violations, whether a step end ever showed two leaders of a term)."""
    logging.disable(logging.CRITICAL)
    try:
        with Cluster(3, seed=seed, record_events=True) as c:
            stream, sample = SafetyChecker(stream=True), SafetyChecker()
            found, missed, two_seen = None, None, False
            for step in range(steps):
                if step % 12 == 6 and c.leader():
                    c.crash(c.leader())
                if step % 12 == 10:
                    for n in c.node_ids:
                        if not c.is_up(n):
                            c.restart(n)
                c.run_for(0.25)
                states = c.observe()
                terms = [s.term for s in states if s.is_leader]
                two_seen |= len(terms) != len(set(terms))
                try:
                    sample.step(states, [], c.node_errors)
                except SafetyViolation as e:
                    missed = missed or e.violations
                try:
                    stream.step(states, [], c.node_errors, c.take_events())
                except SafetyViolation as e:
                    found = e.violations
                    break
            return found, missed, two_seen
    finally:
        logging.disable(logging.NOTSET)


def _first_seed_caught_by(invariant: str, bug: str):
    with inject(bug):
        for seed in range(40):
            found, missed, two_seen = _run_both(seed)
            if found and invariant in {v.invariant for v in found}:
                return seed, found, missed, two_seen
    pytest.fail(f"{bug}: no seed of 40 broke {invariant}")


def test_two_leaders_of_one_term_for_less_than_a_step_are_caught():
    """candidate_gives_vote: two candidates of one term both win, and one steps down a few ms later."""
    seed, found, missed, two_seen = _first_seed_caught_by("election_safety", "candidate_gives_vote")
    v = next(v for v in found if v.invariant == "election_safety")
    assert v.at is not None and v.handling.startswith("response_vote #"), v
    assert not two_seen, "a step end showed both leaders: this run does not test a short window"
    assert missed is None, f"seed {seed}: the step-end checker caught it too: {missed}"


def test_a_vote_granted_twice_in_a_term_is_caught():
    seed, found, missed, _ = _first_seed_caught_by("vote_safety", "vote_twice")
    v = next(v for v in found if v.invariant == "vote_safety")
    assert "voted twice in term" in v.message and v.handling.startswith("request_vote #"), v
    assert missed is None, f"seed {seed}: the step-end checker caught it too: {missed}"


def test_the_same_runs_are_clean_on_unmodified_pysyncobj():
    for seed in range(4):
        found, missed, _ = _run_both(seed)
        assert found is None and missed is None, (seed, found, missed)


def test_the_stream_checker_catches_the_stale_reply_as_it_arrives():
    """Finding 21's steps: ``leader_match_rule`` fires at step 4, the instant B's reply of term 1 raises A's
    match index, before W exists; with the fix the same steps run clean."""
    with Cluster(5, seed=0, network="fifo", record_events=True, **TIMEOUTS) as c:
        w = Watched(c)
        with pytest.raises(SafetyViolation, match=r"leader_match_rule: leader n\d of term 3 counts n\d up to index 9, "
                                                  r"where n\d has 9@1 and the leader no entry") as caught:
            _minority_commit(w)
        assert "next_node_idx" in str(caught.value) and c.state(c.leader()).last_index < 9
    with inject("replies_of_current_term_only"):
        with Cluster(5, seed=0, network="fifo", record_events=True, **TIMEOUTS) as c:
            _minority_commit(Watched(c))
