"""Finding: a restarted node forgets a membership change its log holds but it had not seen committed.

A running pysyncobj node applies a membership entry to its voters when it appends it (Raft's rule:
use the latest configuration in the log, committed or not).  A restarted node rebuilds its voters
from its dump (or the peers it was started with) and then only from entries as they are applied,
so a change past its stored commit index is missing until that index is committed again.  Two
changes later it counts votes against a configuration two steps old, whose majority need not
overlap the current one's, and it can be elected without a committed entry.  With the fix
``membership_of_the_log_on_restart`` (the first tick applies the membership entries past the last
applied index, as appending them did) the test passes.  See FINDINGS.md.

Five voters; V is a follower, S1 and S2 the two stale ones, L the leader, X the fifth:

1. V writes a dump (voters: the five).  {S1, S2} are partitioned off.
2. n6 is added: V appends the entry and acknowledges it, L commits it (L, V, X, n6: 4 of 6), and
   the commit never reaches V (it is paused as the leader counts its acknowledgement).  V
   crashes, its stored commit index below the entry.
3. n7 is added and a write W commits on L, X, n6, n7 (4 of 7).
4. {V, S1, S2} | {L, X, n6, n7}, V restarts: from its dump it counts five voters, not six, and
   S1 and S2, whose logs end before the n6 entry, elect it: 3 votes, a majority of five.  It leads
   without W (``leader_completeness``).
"""
from __future__ import annotations

import pytest

from harness import Cluster, SafetyViolation
from harness.history import OK
from harness.state import LEADER

from tests.scenarios._support import Watched

pytestmark = pytest.mark.xfail(strict=True, raises=SafetyViolation,
                               reason="pysyncobj 0.3.11-0.3.17 rebuilds a restarted node's voters from "
                                      "its dump and applied entries only")

TIMEOUTS = dict(raftMinTimeout=1.0, raftMaxTimeout=2.0, appendEntriesPeriod=0.1)


def test_a_restarted_node_counts_the_voters_of_its_logs_latest_membership_entry():
    with Cluster(5, seed=3, **TIMEOUTS) as c:
        w = Watched(c)
        leader = w.wait_leader()
        w.must_put("k", 0)
        w.run_for(0.5)
        v, s1, s2, x = [n for n in c.node_ids if n != leader]
        # 1. V's dump holds the five voters.
        c.force_snapshot(v)
        assert w.run_until(lambda: c.state(v).first_index > 1, 3), "V wrote no dump"
        c.partition([s1, s2], [leader, v, x])
        # 2. V holds the n6 entry, never its commit.
        entry = c.state(leader).last_index + 1  # the leader appends the change on its next tick
        c.add_node()
        change = c.membership_changes[-1]
        # stopped at the instant the leader counts V's acknowledgement (and commits), before any
        # heartbeat can tell V; paused, V reads nothing more and never campaigns
        assert c.run_until(lambda: c.state(leader).match_index.get(v, 0) >= entry, 2)
        c.pause(v, 30)
        assert w.run_until(lambda: change.outcome == OK, 5), change
        assert c.state(v).commit_index < entry
        c.crash(v)
        # 3. n7 joins and W commits on L, X, n6, n7.
        c.add_node()
        change = c.membership_changes[-1]
        assert w.run_until(lambda: change.outcome == OK, 5), change
        w.must_put("w", "W")
        # 4. V restarts among the stale nodes.
        c.heal()
        c.partition([v, s1, s2], [n for n in c.node_ids if n not in (v, s1, s2)])
        c.restart(v)
        w.run_until(lambda: c.state(v).role == LEADER, 20)
        assert c.state(v).role != LEADER, f"{v} leads with the votes of {s1} and {s2}"
        # With the fix V counts six voters and three votes elect nobody; healed, the cluster goes on.
        c.heal()
        w.must_put("k", 1)
