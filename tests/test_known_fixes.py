"""Known fixes: each changes pysyncobj's behaviour where its finding says, and only properties/ gets them."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis.database import InMemoryExampleDatabase

from harness.fuzz.database import KeyPrefixedDatabase
from harness.adapter.fixes import KNOWN_FIXES
from harness.adapter.patching import inject, installed, verify_all
from harness.adapter.injected_bugs import INJECTED_BUGS

ROOT = Path(__file__).resolve().parents[1]


def test_every_known_fix_applies_and_changes_behaviour():
    """Each probe fails on unmodified pysyncobj (the finding is there) and passes with the fix."""
    assert KNOWN_FIXES
    assert verify_all(KNOWN_FIXES) == {name: None for name in KNOWN_FIXES}


def test_known_fixes_and_injected_bugs_are_told_apart():
    assert not set(KNOWN_FIXES) & set(INJECTED_BUGS)
    for name, fix in KNOWN_FIXES.items():
        assert fix.title.startswith("Finding "), name
        assert "tests/findings/" in fix.description, name
    with inject(*KNOWN_FIXES, "vote_twice"):
        assert installed() == [*KNOWN_FIXES, "vote_twice"]
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
    assert _pytest(tmp_path, "--raft-known-fixes") == [f"PATCHES {list(KNOWN_FIXES)}", "PATCHES []"]


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
