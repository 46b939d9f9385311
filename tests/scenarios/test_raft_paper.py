"""The Raft paper's rules, observed on real pysyncobj nodes (after raft-rs' test_raft_paper).

raft-rs drives one Raft object by hand; here whole clusters run and the rule
is read off the nodes' observed states while messages are held or cut.
"""
from __future__ import annotations

import contextlib

import pytest

from harness import Cluster, HoldFilter, SafetyViolation
from harness.adapter.patching import inject
from harness.adapter.observe import VERSION_INFO
from harness.history import FAILED, OK, PENDING
from harness.state import CANDIDATE, FOLLOWER, LEADER

from ._support import Watched, converged, log, others, watch_roles

# Explicit timeouts so the timing assertions below have known bounds.
TIMEOUTS = dict(raftMinTimeout=1.0, raftMaxTimeout=2.0, appendEntriesPeriod=0.1)


def test_follower_that_stops_hearing_the_leader_campaigns_in_the_next_term():
    """Election on timeout (paper §5.2): a follower whose append_entries are held becomes a candidate
    for term+1, voting for itself, one election timeout after the last heartbeat; the follower that
    still hears the leader keeps its term meanwhile."""
    with Cluster(3, seed=11, **TIMEOUTS) as c:
        leader = c.wait_leader()
        c.must_put("k", 1)
        deaf, hearing = others(c, leader)
        term = c.state(leader).term
        c.add_recv_filter(deaf, HoldFilter(["append_entries"]))
        start = c.now
        assert c.run_until(lambda: c.state(deaf).role != FOLLOWER, 5)
        s = c.state(deaf)
        assert (s.role, s.term, s.voted_for) == (CANDIDATE, term + 1, deaf)
        # Election timeout is in [1.0, 2.0] after the last heartbeat, which came <= 0.1 s before the hold.
        assert 1.0 - 0.1 - 0.05 <= c.now - start <= 2.0
        assert c.state(hearing).term == term and c.state(hearing).role == FOLLOWER
        c.clear_all_filters()
        assert c.run_until(lambda: converged(c) and c.leader() is not None, 10)
        assert c.must_get("k") == 1


def test_leader_steps_down_on_a_higher_term_even_when_it_refuses_the_vote():
    """Rules for servers (paper §5.1): a leader that sees a request_vote of a higher term becomes a
    follower of that term, although the candidate's log is behind and the vote is refused."""
    with Cluster(3, seed=5, **TIMEOUTS) as c:
        leader = c.wait_leader()
        stale = others(c, leader)[0]
        c.isolate_node(stale)
        for i in range(3):
            c.must_put(f"k{i}", i)
        term = c.state(leader).term
        c.clear_all_filters()
        c.add_recv_filter(stale, HoldFilter(["append_entries"]))  # it must time out before hearing the leader
        assert c.run_until(lambda: c.state(leader).term > term, 10)
        s = c.state(leader)
        assert (s.role, s.term, s.voted_for) == (FOLLOWER, term + 1, None)
        assert c.state(stale).term == term + 1 and c.state(stale).role == CANDIDATE
        c.clear_all_filters()
        assert c.run_until(lambda: converged(c), 10)
        assert c.must_get("k2") == 2


def test_candidate_with_a_stale_log_never_wins():
    """Election restriction (paper §5.4.1): a node that missed committed entries campaigns first and
    again and again (it never hears a leader), but is never elected while its log is behind; the
    others keep electing leaders among themselves and committing."""
    with Cluster(3, seed=8, **TIMEOUTS) as c:
        leader = c.wait_leader()
        stale = others(c, leader)[0]
        c.isolate_node(stale)
        for i in range(4):
            c.must_put(f"k{i}", i)
        committed = c.state(leader).commit_index
        assert c.state(stale).last_index < committed
        c.clear_all_filters()
        c.add_recv_filter(stale, HoldFilter(["append_entries"]))
        roles = watch_roles(c, c.node_ids, 15)
        assert any(role == CANDIDATE for role, _ in roles[stale])
        assert all(role != LEADER for role, _ in roles[stale])
        assert len({t for role, t in roles[stale] if role == CANDIDATE}) >= 2  # it kept trying
        assert c.state(stale).last_index < committed
        assert any(role == LEADER for n in others(c, stale) for role, _ in roles[n])
        c.clear_all_filters()
        assert c.run_until(lambda: converged(c), 10)
        assert c.must_get("k3") == 3


def test_deposed_leaders_uncommitted_suffix_is_overwritten():
    """Log repair (paper §5.3): a leader cut off with one follower appends entries that never commit;
    the majority commits other entries at the same indexes. After the heal both ex-minority nodes
    hold exactly the new leader's log (entries of the new term at every one of those indexes) and
    every write of the deposed leader fails as DISCARDED."""
    with Cluster(5, seed=4) as c:
        w = Watched(c)
        old = w.wait_leader()
        w.must_put("k", "base")
        buddy = others(c, old)[0]
        majority = [n for n in c.node_ids if n not in (old, buddy)]
        c.partition([old, buddy], majority)
        first_stale = c.state(old).last_index + 1
        stale = [c.put("s", i, via=old) for i in range(6)]
        w.run_for(3)
        assert [e.index for e in log(c, buddy, first_stale)] == list(range(first_stale, first_stale + 6))
        old_term = c.state(old).term
        assert w.run_until(lambda: any(c.state(n).role == LEADER for n in majority), 10)
        new = next(n for n in majority if c.state(n).role == LEADER)
        for i in range(7):  # one more than the stale suffix: every stale index gets a new entry
            assert w.must_put("m", i).via == new
        new_term = c.state(new).term
        assert new_term > old_term
        c.clear_all_filters()
        assert w.run_until(lambda: converged(c) and all(c.state(n).role == FOLLOWER for n in (old, buddy)), 10)
        reference = log(c, new)
        for n in (old, buddy):
            assert log(c, n) == reference
            assert {e.term for e in log(c, n, first_stale, first_stale + 5)} == {new_term}
            assert c.state(n).term == c.state(new).term
        assert [(op.outcome, op.reason) for op in stale] == [(FAILED, "DISCARDED")] * 6
        assert c.must_get("s") is None and c.must_get("m") == 6


def _stale_acks_of_an_old_term_entry(c: Cluster, w: Watched) -> dict:
    """Figure 8's first step: entry X of term t sits on the leader and one follower (a majority of 3)
    but was never known committed; the leader is re-elected in term t+1, appends its no-op, and only
    then do the follower's acknowledgements of X (held until now) arrive.  Returns what the caller
    checks next: the leader, X's index, the later acks still held, the write of X, both terms."""
    leader = w.wait_leader()
    w.must_put("k", 0)
    follower, absent = others(c, leader)
    x = c.state(leader).last_index + 1
    c.isolate_node(absent)  # X reaches only the follower
    acks_of_x = HoldFilter(["next_node_idx"], predicate=lambda e: e.src == follower
                           and e.message["next_node_idx"] == x + 1)
    later_acks = HoldFilter(["next_node_idx"], predicate=lambda e: e.src == follower
                            and e.message["next_node_idx"] > x + 1)
    c.add_recv_filter(leader, acks_of_x)
    c.add_recv_filter(leader, later_acks)
    op = c.put("k", "X", via=leader)
    assert w.run_until(lambda: len(log(c, follower, x, x)) == 1, 2)
    term = c.state(leader).term
    assert log(c, follower, x, x)[0].term == term and c.state(leader).commit_index < x
    # Hearing no acknowledgement, the leader falls back after leaderFallbackTimeout and is
    # re-elected by the follower (whose log is as long as its own) in the next term.
    assert w.run_until(lambda: c.state(leader).role == LEADER and c.state(leader).term > term, 10)
    new_term = c.state(leader).term
    noop = log(c, leader, x + 1, x + 1)[0]
    assert noop.term == new_term and noop.command[:1] == b"\x01"
    assert acks_of_x.release() > 0  # the stale acks of X arrive: match index of the follower is X
    w.run_for(0.3)
    return dict(leader=leader, follower=follower, x=x, later_acks=later_acks, op=op, term=term, new_term=new_term)


#: A held message does not stall its link on the unreliable network; the leader falls back quickly.
_FIGURE_8 = dict(TIMEOUTS, leaderFallbackTimeout=1.5)


@pytest.mark.xfail(VERSION_INFO < (0, 3, 12), strict=True,
                   reason="pysyncobj 0.3.11 advances a leader's commit index over entries of earlier terms "
                          "by counting replicas (no current-term check before 0.3.12): Figure 8 is possible")
def test_new_leader_commits_an_old_term_entry_only_with_an_entry_of_its_own_term():
    """Commitment rule (paper §5.4.2, Figure 8): a stale acknowledgement of X from term t tells the
    leader of term t+1 that a majority holds X, and still it must not commit X.  Only when its own
    no-op (term t+1) is acknowledged does the commit index move, past X and the no-op at once."""
    with Cluster(3, seed=3, network="unreliable", **_FIGURE_8) as c:
        w = Watched(c)
        r = _stale_acks_of_an_old_term_entry(c, w)
        leader, x, op = r["leader"], r["x"], r["op"]
        s = c.state(leader)
        assert s.role == LEADER and s.term == r["new_term"]
        assert s.match_index[r["follower"]] == x
        assert s.commit_index < x  # a majority holds X, but X is of an older term
        assert op.outcome == PENDING
        r["later_acks"].release()
        assert w.run_until(lambda: c.state(leader).commit_index >= x + 1, 2)
        assert log(c, leader, x, x)[0].term == r["term"]  # X itself was kept, committed with the no-op
        assert w.run_until(lambda: op.outcome != PENDING, 2) and op.outcome == OK
        c.clear_all_filters()
        assert w.run_until(lambda: converged(c), 10)


def test_the_stream_checker_catches_a_leader_committing_an_old_term_entry_when_it_does():
    """The same run with the commit rule broken (the injected bug ``commit_old_term``; 0.3.11 has it
    unmodified): ``leader_commit_rule`` fails at the tick that commits X, before any entry is lost."""
    bugs = contextlib.nullcontext() if VERSION_INFO < (0, 3, 12) else inject("commit_old_term")
    with bugs, Cluster(3, seed=3, network="unreliable", record_events=True, **_FIGURE_8) as c:
        w = Watched(c)
        with pytest.raises(SafetyViolation) as caught:
            _stale_acks_of_an_old_term_entry(c, w)
        [v] = caught.value.violations
        assert (v.invariant, v.terms[1]) == ("leader_commit_rule", c.state(v.node).term - 1), v
        assert v.handling.startswith("tick"), v


def test_the_same_stale_acks_break_no_commit_rule_on_a_correct_leader():
    if VERSION_INFO < (0, 3, 12):
        pytest.skip("pysyncobj 0.3.11 has no current-term check: finding 7")
    with Cluster(3, seed=3, network="unreliable", record_events=True, **_FIGURE_8) as c:
        w = Watched(c)
        r = _stale_acks_of_an_old_term_entry(c, w)
        assert c.state(r["leader"]).commit_index < r["x"]
        r["later_acks"].release()
        assert w.run_until(lambda: c.state(r["leader"]).commit_index >= r["x"] + 1, 2)
