"""Finding: ``ReplList.__setitem__`` (``lst[i] = v``) fails until code version 1 is enabled.

``ReplList.__setitem__`` is declared ``@replicated(ver=1)`` (``ReplDict``'s is
version 0).  A fresh cluster runs code version 0, so pysyncobj has no version
of the method to call: ``lst[0] = v`` raises ``KeyError: (id(lst),
'__setitem__')`` in the caller, nothing is proposed, and the callback never
fires.  It works only after someone proposes ``setCodeVersion(1)`` and that
commits.  Nothing in ``ReplList``'s docstrings says so; ``set(position,
value)`` does the same and works.  Strict xfail on the releases that have it.
"""
import pytest
from pysyncobj.batteries import ReplList

from harness import Cluster
from harness.history import OK

pytestmark = pytest.mark.xfail(strict=True, raises=AssertionError,
                               reason="pysyncobj 0.3.11-0.3.17: ReplList.__setitem__ is @replicated(ver=1)")


def test_setitem_works_on_a_fresh_cluster():
    with Cluster(3, seed=0, consumers=lambda node: {"list": ReplList()}) as c:
        c.wait_leader()
        c.must_call("append", "list", 1, consumer="list")
        op = c.call("__setitem__", "list", 0, 5, consumer="list")
        c.run_for(2)
        assert op.outcome == OK and not c.node_errors, \
            f"{op}; {c.node_errors[-1].traceback.splitlines()[-1] if c.node_errors else ''}"
        assert [c.consumer(n, "list").rawData() for n in c.node_ids] == [[5]] * 3
