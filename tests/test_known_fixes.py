"""Known fixes: each changes pysyncobj's behaviour where its finding says, and only properties/ gets them."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.mutations import KNOWN_FIXES, MUTATIONS, inject, installed, verify_all

ROOT = Path(__file__).resolve().parents[1]


def test_every_known_fix_applies_and_changes_behaviour():
    """Each probe fails on unmodified pysyncobj (the finding is there) and passes with the fix."""
    assert KNOWN_FIXES
    assert verify_all(KNOWN_FIXES) == {name: None for name in KNOWN_FIXES}


def test_known_fixes_and_seeded_bugs_are_told_apart():
    assert not set(KNOWN_FIXES) & set(MUTATIONS)
    for name, fix in KNOWN_FIXES.items():
        assert fix.title.startswith("Finding "), name
        assert "tests/findings/" in fix.description, name
    with inject(*KNOWN_FIXES, "vote_twice"):
        assert installed() == [*KNOWN_FIXES, "vote_twice"]
    assert installed() == []
    with pytest.raises(KeyError, match="known fixes: "):
        with inject("no_such_fix"):
            pass


def _pytest(tmp_path, *options):
    """Run one probe test under ``properties/`` and one elsewhere, with the project's conftest."""
    body = textwrap.dedent("""
        from harness.mutations import installed

        def test_patches():
            print("PATCHES", installed())
    """)
    for folder in ("properties", "other"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"test_{folder}_probe.py").write_text(body)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-s", "-q",
                             str(tmp_path / "properties"), str(tmp_path / "other"), *options],
                            cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line[line.index("PATCHES"):] for line in result.stdout.splitlines() if "PATCHES" in line]


def test_option_installs_the_fixes_for_properties_only(tmp_path):
    assert _pytest(tmp_path, "--known-fixes") == [f"PATCHES {list(KNOWN_FIXES)}", "PATCHES []"]


def test_without_the_option_nothing_is_patched(tmp_path):
    assert _pytest(tmp_path) == ["PATCHES []", "PATCHES []"]
