"""Known fixes: each removes its finding, they install together, and only properties/ gets them.

That each fix's probe tells the unmodified and the fixed release apart, on every release, and that
the fixes match the ledger, is checked in ``tests/test_ledger.py``; here each fix runs its finding's
own regression scenarios and they pass.
"""
import importlib
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, List, Tuple

import pytest
from hypothesis.database import InMemoryExampleDatabase

from harness.adapter.fixes import KNOWN_FIXES
from harness.adapter.injected_bugs import INJECTED_BUGS
from harness.adapter.observe import VERSION
from harness.adapter.patching import inject, installed
from harness.fuzz.database import KeyPrefixedDatabase
from harness.ledger.bugs import LEDGER, known_fixes

ROOT = Path(__file__).resolve().parents[1]

#: Findings whose regression scenarios meet another bug too on some release, by ledger id: on 0.3.11 the
#: reordered append_entries of finding 2, and the restarts of finding 4's ported pysyncobj test, also lower
#: a follower's commit index through finding 8; with finding 16's fix alone, the next message (a real first
#: snapshot chunk) commits the same entries through finding 3.
ALSO_NEEDS = {2: (8,), 4: (8,), 16: (3,)}

#: Regression tests that pin what unmodified pysyncobj does (the storage tests assert today's behaviour),
#: so with the fix in they must fail instead of pass.
PINNED = "tests/test_storage.py::"


def _regressions() -> List[Tuple[int, str]]:
    return [(b.id, node_id) for b in LEDGER.values() if b.fix for node_id in b.regression]


def _test_function(node_id: str) -> Callable[[], None]:
    """The test function a node id names (``tests/<dir>/<file>.py::<name>``), imported as pytest does:
    ``tests/`` is on sys.path, its subdirectories are packages."""
    path, name = node_id.split("::")
    module = importlib.import_module(str(Path(path).relative_to("tests").with_suffix("")).replace("/", "."))
    function = getattr(module, name)
    assert not inspect.signature(function).parameters, f"{node_id} takes arguments: call it through pytest"
    return function


@pytest.mark.parametrize("bug_id, node_id", _regressions(), ids=[f"{i}-{n.split('::')[1]}" for i, n in _regressions()])
def test_each_fix_makes_its_findings_regression_tests_pass(bug_id, node_id):
    """The regression test of a finding asserts the correct behaviour (a strict xfail on the releases that
    have the bug); with the finding's fix installed its steps pass.  A test that pins the bug instead
    fails with the fix in."""
    bug = LEDGER[bug_id]
    if not bug.affects():
        pytest.skip(f"pysyncobj {VERSION} does not have finding {bug_id} (releases {bug.releases})")
    test = _test_function(node_id)
    with inject(bug.fix, *[LEDGER[i].fix for i in ALSO_NEEDS.get(bug_id, ()) if LEDGER[i].affects()]):
        if node_id.startswith(PINNED):
            with pytest.raises(AssertionError):
                test()
        else:
            test()


def test_known_fixes_and_injected_bugs_are_told_apart():
    assert not set(KNOWN_FIXES) & set(INJECTED_BUGS)
    with inject(*known_fixes(), "vote_twice"):
        assert installed() == [*known_fixes(), "vote_twice"]
    assert installed() == []
    with pytest.raises(KeyError, match="known fixes: "):
        with inject("no_such_fix"):
            pass


_PROBE = """
    from harness.adapter.patching import installed

    def test_patches():
        print("PATCHES", installed())
"""


def _pytest(tmp_path, *options, body=_PROBE):
    """Run one probe test under ``properties/`` and one elsewhere, with the project's conftest;
    the lines they printed from "PATCHES" on."""
    body = textwrap.dedent(body)
    for folder in ("properties", "other"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"test_{folder}_probe.py").write_text(body)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-s", "-q",
                             str(tmp_path / "properties"), str(tmp_path / "other"), *options],
                            cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line[line.index("PATCHES"):] for line in result.stdout.splitlines() if "PATCHES" in line]


def test_option_installs_the_fixes_for_properties_only(tmp_path):
    assert _pytest(tmp_path, "--raft-known-fixes") == [f"PATCHES {known_fixes()}", "PATCHES []"]


def test_without_the_option_nothing_is_patched(tmp_path):
    assert _pytest(tmp_path) == ["PATCHES []", "PATCHES []"]


def test_patched_runs_keep_their_examples_apart():
    """A run with the fixes must neither replay nor delete an unpatched run's saved examples."""
    base = InMemoryExampleDatabase()
    patched = KeyPrefixedDatabase(base, b"known-fixes:")
    base.save(b"k", b"unpatched failure")
    assert list(patched.fetch(b"k")) == []
    patched.delete(b"k", b"unpatched failure")
    assert list(base.fetch(b"k")) == [b"unpatched failure"]
    patched.save(b"k", b"patched failure")
    patched.move(b"k", b"k2", b"patched failure")
    assert list(patched.fetch(b"k2")) == [b"patched failure"] and list(base.fetch(b"k")) == [b"unpatched failure"]
    with pytest.raises(ValueError, match="prefix must be non-empty bytes"):
        KeyPrefixedDatabase(base, b"")
    with pytest.raises(TypeError, match="base must be a hypothesis ExampleDatabase"):
        KeyPrefixedDatabase("dir", b"x")


def test_option_puts_the_profile_database_under_its_own_prefix(tmp_path):
    lines = _pytest(tmp_path, "--raft-known-fixes", "--hypothesis-profile=raft-dev", body="""
        from hypothesis import settings

        def test_database():
            print("PATCHES", repr(settings().database))
    """)
    assert len(lines) == 2 and all("KeyPrefixedDatabase" in line and "b'known-fixes:'" in line for line in lines)
