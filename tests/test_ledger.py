"""The ledger (:mod:`harness.ledger.bugs`) is the one source of truth, and everything else agrees with it.

FINDINGS.md must name the same bugs with the same titles and releases and cite each bug's fix; every
regression test the ledger names must exist; every fix must belong to exactly one ledger entry; and a
fix must apply exactly on the releases its bug affects, with a probe that is False on unmodified
pysyncobj and True with the fix, alone and with every other fix of that release installed.  The
last check runs on the installed release here and, in a subprocess per release, on every release
in ``RAFT_HARNESS_RELEASES`` (a directory with one ``pip install --target`` per version, as
``.ci/run`` builds).

Each check is a function that returns its problems.  The tests run it on the real files, where it
must find none, and on a doctored copy, where it must find the problem it exists for: a check that
cannot fail proves nothing.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import pytest

from harness.adapter import probes
from harness.adapter.fixes import KNOWN_FIXES
from harness.adapter.observe import VERSION
from harness.adapter.patching import Mutation, MutationNotApplicable, inject
from harness.ledger.bugs import LEDGER, RELEASES, Bug, known_fixes

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ROOT / "FINDINGS.md"
NETWORKS = ("fifo", "unreliable", "any")


# --------------------------------------------------------------------------------------------
# FINDINGS.md
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Entry:
    """One finding as FINDINGS.md writes it: a ``## N. Title`` section or a ``- **N. Title**`` bullet."""

    id: int
    title: str
    text: str  # the whole section (a heading's up to the next heading, a bullet's up to the next bullet)


_HEADING = re.compile(r"^## (\d+)\. (.+)$", re.M)
_BULLET = re.compile(r"^- \*\*(\d+)\. (.+?)\*\*", re.M | re.S)
_RELEASES = re.compile(r"\*\*Releases:\*\* (\d+\.\d+\.\d+)(?: – (\d+\.\d+\.\d+))?(?=[.;,( ]|$)", re.M)
_CITED = re.compile(r'KNOWN_FIXES\["(\w+)"\]')


def findings_entries(text: str) -> List[Entry]:
    """Every numbered finding in FINDINGS.md, by id (a repeated id appears twice)."""
    headings = [m.start() for m in re.finditer(r"^## ", text, re.M)] + [len(text)]
    items = [m.start() for m in re.finditer(r"^(?:## |- )", text, re.M)] + [len(text)]
    out = []
    for pattern, ends in ((_HEADING, headings), (_BULLET, items)):
        for m in pattern.finditer(text):
            end = min(e for e in ends if e > m.start())
            out.append(Entry(int(m.group(1)), " ".join(m.group(2).split()), text[m.start():end]))
    return sorted(out, key=lambda e: e.id)


def _capitalized(title: str) -> str:
    return title[:1].upper() + title[1:]


def findings_problems(text: str, ledger: Mapping[int, Bug]) -> List[str]:
    """Where FINDINGS.md and the ledger disagree: ids, titles (FINDINGS.md's is the ledger's with a capital
    first letter), releases (its one ``**Releases:**`` line starts with the ledger's range) and fixes
    (a bug's fix is cited as ``**Fix** (`harness.adapter.fixes.KNOWN_FIXES["name"]` ...``, no other is)."""
    entries = findings_entries(text)
    ids = [e.id for e in entries]
    problems = [f"FINDINGS.md has finding {i} {ids.count(i)} times" for i in sorted(set(ids)) if ids.count(i) > 1]
    problems += [f"finding {i} is in the ledger, not in FINDINGS.md" for i in sorted(set(ledger) - set(ids))]
    problems += [f"finding {i} is in FINDINGS.md, not in the ledger" for i in sorted(set(ids) - set(ledger))]
    for e in entries:
        bug = ledger.get(e.id)
        if bug is None:
            continue
        title = _capitalized(bug.title)
        if e.title != title:
            problems.append(f"finding {e.id}: FINDINGS.md says {e.title!r}, the ledger {title!r}")
        releases = [m.group(1) if m.group(2) is None else f"{m.group(1)} – {m.group(2)}"
                    for m in _RELEASES.finditer(e.text)]
        if releases != [bug.releases]:
            problems.append(f"finding {e.id}: FINDINGS.md's releases are {releases}, the ledger's {bug.releases!r}")
        cited = set(_CITED.findall(e.text))
        if cited != ({bug.fix} if bug.fix else set()):
            problems.append(f"finding {e.id}: FINDINGS.md cites the fixes {sorted(cited)}, the ledger has {bug.fix}")
        elif bug.fix and f'**Fix** (`harness.adapter.fixes.KNOWN_FIXES["{bug.fix}"]`' not in e.text:
            problems.append(f"finding {e.id}: FINDINGS.md has no '**Fix** (`harness.adapter.fixes."
                            f"KNOWN_FIXES[\"{bug.fix}\"]`' line")
    return problems


def test_findings_md_agrees_with_the_ledger():
    assert findings_problems(FINDINGS.read_text(encoding="utf-8"), LEDGER) == []


def _doctored_findings(old: str, new: str) -> List[str]:
    text = FINDINGS.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    return findings_problems(text.replace(old, new), LEDGER)


def test_the_findings_check_catches_each_disagreement():
    ledger_title = _capitalized(LEDGER[6].title)
    doctored_title = ledger_title.replace("never answered", "never replied to")
    assert _doctored_findings("## 6. A forwarded write is never answered",
                              "## 6. A forwarded write is never replied to") == [
        f"finding 6: FINDINGS.md says {doctored_title!r}, the ledger {ledger_title!r}"]
    (bullet,) = _doctored_findings("- **10. A torn dump", "- **10. a torn dump")
    assert bullet.startswith("finding 10: FINDINGS.md says 'a torn dump")
    assert _doctored_findings("## 7. ", "## 97. ") == ["finding 7 is in the ledger, not in FINDINGS.md",
                                                       "finding 97 is in FINDINGS.md, not in the ledger"]
    duplicate = _doctored_findings("## 12. ", "## 3. ")
    assert duplicate[:2] == ["FINDINGS.md has finding 3 2 times", "finding 12 is in the ledger, not in FINDINGS.md"]
    assert _doctored_findings("**Releases:** 0.3.11 – 0.3.14", "**Releases:** 0.3.11 – 0.3.15") == [
        "finding 13: FINDINGS.md's releases are ['0.3.11 – 0.3.15'], the ledger's '0.3.11 – 0.3.14'"]
    assert _doctored_findings("## 7. A leader commits entries of earlier terms by counting replicas\n",
                              "## 7. A leader commits entries of earlier terms by counting replicas\n"
                              "**Releases:** 0.3.11.\n") == [
        "finding 7: FINDINGS.md's releases are ['0.3.11', '0.3.11'], the ledger's '0.3.11'"]
    assert _doctored_findings('KNOWN_FIXES["membership_change_guard"]', 'KNOWN_FIXES["snapshot_chunk_commit"]') == [
        "finding 1: FINDINGS.md cites the fixes ['snapshot_chunk_commit'], the ledger has membership_change_guard"]
    assert _doctored_findings('**Fix** (`harness.adapter.fixes.KNOWN_FIXES["dump_keeps_journal_tail"]`',
                              'Fixed by `harness.adapter.fixes.KNOWN_FIXES["dump_keeps_journal_tail"]`') == [
        "finding 5: FINDINGS.md has no '**Fix** (`harness.adapter.fixes.KNOWN_FIXES[\"dump_keeps_journal_tail\"]`' line"]


# --------------------------------------------------------------------------------------------
# Regression tests
# --------------------------------------------------------------------------------------------
def regression_problems(ledger: Mapping[int, Bug]) -> List[str]:
    """Regression test node ids of the ledger that pytest does not collect."""
    wanted = [(b.id, node_id, node_id.split("::")[0]) for b in ledger.values() for node_id in b.regression]
    files = sorted({path for _, _, path in wanted if (ROOT / path).is_file()})
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                         cwd=str(ROOT), capture_output=True, text=True, timeout=300).stdout
    collected = set(out.splitlines())
    return [f"finding {i}: {node_id}: " + ("pytest collects no such test" if path in files else "no such file")
            for i, node_id, path in wanted if node_id not in collected]


def test_every_regression_test_of_the_ledger_exists():
    assert all(b.regression for b in LEDGER.values())
    assert regression_problems(LEDGER) == []


def unlisted_findings_tests(ledger: Mapping[int, Bug], findings: Path = ROOT / "tests" / "findings") -> List[str]:
    """Tests in ``tests/findings/`` that are neither a regression test of the ledger nor a test of a fix
    (named ``test_the_known_fix_...``): a finding's test must have its ledger entry."""
    listed = {node_id.split("::")[1].split("[")[0] for b in ledger.values() for node_id in b.regression
              if node_id.startswith("tests/findings/")}  # a parametrized test is listed by its cases' ids
    sources = "\n".join(path.read_text(encoding="utf-8") for path in sorted(findings.glob("test_*.py")))
    found = re.findall(r"^def (test_\w+)", sources, re.M)
    return [name for name in found if name not in listed and not name.startswith("test_the_known_fix_")]


def test_every_findings_test_has_its_ledger_entry():
    assert unlisted_findings_tests(LEDGER) == []


def test_the_findings_tests_check_catches_a_test_without_an_entry():
    doctored = dict(LEDGER)
    doctored[15] = dataclasses.replace(LEDGER[15], regression=(
        "tests/scenarios/test_raft_paper.py::test_candidate_with_a_stale_log_never_wins",))
    assert unlisted_findings_tests(doctored) == ["test_a_duplicated_vote_counts_once"]


def test_the_regression_check_catches_a_missing_test():
    doctored = dict(LEDGER)
    doctored[1] = dataclasses.replace(LEDGER[1], regression=(
        "tests/findings/test_concurrent_membership_change.py::test_no_such_test", "tests/findings/test_gone.py::test_x",
        "tests/test_storage.py::test_power_loss_makes_a_node_forget_its_vote_and_elect_two_leaders_in_one_term[Maybe]"))
    assert regression_problems(doctored) == [
        "finding 1: tests/findings/test_concurrent_membership_change.py::test_no_such_test: pytest collects no such test",
        "finding 1: tests/findings/test_gone.py::test_x: no such file",
        "finding 1: tests/test_storage.py::test_power_loss_makes_a_node_forget_its_vote_and_elect_two_leaders_in_one_"
        "term[Maybe]: pytest collects no such test"]


# --------------------------------------------------------------------------------------------
# Fixes and ledger entries
# --------------------------------------------------------------------------------------------
def registry_problems(ledger: Mapping[int, Bug], fixes: Mapping[str, Mutation]) -> List[str]:
    """Ledger entries and fixes that do not pair up one to one, or are not well formed."""
    problems = []
    for b in ledger.values():
        if b.first not in RELEASES or b.last not in RELEASES or RELEASES.index(b.first) > RELEASES.index(b.last):
            problems.append(f"finding {b.id}: releases {b.first!r} to {b.last!r} are not a range of {RELEASES}")
        if b.network not in NETWORKS:
            problems.append(f"finding {b.id}: network {b.network!r} is none of {NETWORKS}")
        if b.fix is None:
            if not b.no_fix:
                problems.append(f"finding {b.id}: no fix, and no_fix does not say why")
            continue
        if b.no_fix:
            problems.append(f"finding {b.id}: has the fix {b.fix!r} and a no_fix reason")
        if b.fix not in fixes:
            problems.append(f"finding {b.id}: its fix {b.fix!r} is not in KNOWN_FIXES")
        elif not fixes[b.fix].title.startswith(f"Finding {b.id}: "):
            problems.append(f"finding {b.id}: the title of {b.fix!r} does not start with 'Finding {b.id}: '")
    for name in fixes:
        owners = [b.id for b in ledger.values() if b.fix == name]
        if len(owners) != 1:
            problems.append(f"fix {name!r} belongs to the ledger entries {owners}, not to exactly one")
    return problems


def test_every_fix_belongs_to_one_ledger_entry():
    assert registry_problems(LEDGER, KNOWN_FIXES) == []


def test_the_registry_check_catches_unpaired_fixes():
    doctored = dict(LEDGER)
    doctored[2] = dataclasses.replace(LEDGER[2], fix="no_such_fix")
    doctored[10] = dataclasses.replace(LEDGER[10], no_fix="")
    doctored[7] = dataclasses.replace(LEDGER[7], first="0.3.12", last="0.3.11", network="tcp")
    doctored[9] = dataclasses.replace(LEDGER[9], fix="snapshot_chunk_commit", no_fix="")
    fixes = dict(KNOWN_FIXES, spare=dataclasses.replace(KNOWN_FIXES["stale_snapshot_keeps_log"], name="spare"))
    assert registry_problems(doctored, fixes) == [
        "finding 2: its fix 'no_such_fix' is not in KNOWN_FIXES",
        f"finding 7: releases '0.3.12' to '0.3.11' are not a range of {RELEASES}",
        f"finding 7: network 'tcp' is none of {NETWORKS}",
        "finding 9: the title of 'snapshot_chunk_commit' does not start with 'Finding 9: '",
        "finding 10: no fix, and no_fix does not say why",
        "fix 'truncate_on_conflict_only' belongs to the ledger entries [], not to exactly one",
        "fix 'snapshot_chunk_commit' belongs to the ledger entries [3, 9], not to exactly one",
        "fix 'spare' belongs to the ledger entries [], not to exactly one"]


# --------------------------------------------------------------------------------------------
# Each fix on a release: applies where its bug is, changes what its probe sees, composes
# --------------------------------------------------------------------------------------------
def _probe(m: Mutation, *installed: Mutation) -> Any:
    """Whether ``m``'s probe passes with ``installed`` patched in; the error text if they do not install."""
    try:
        if not installed:
            return probes.run(m.probe, m.probe_peers)
        with inject(*installed):
            return probes.run(m.probe, m.probe_peers)
    except MutationNotApplicable as e:
        return f"does not install: {str(e).splitlines()[0]}"


def release_report(ledger: Mapping[int, Bug] = LEDGER, fixes: Mapping[str, Mutation] = KNOWN_FIXES) -> Dict[str, Any]:
    """What each fix does on the installed pysyncobj (JSON-able, for the subprocess per release): whether
    its bug affects this release and whether it applies, and where it does, its probe unpatched, with
    the fix, and with every fix of this release installed too (in ledger order, and reversed)."""
    owner = {b.fix: b for b in ledger.values() if b.fix}
    release = [fixes[b.fix] for b in ledger.values() if b.fix in fixes and b.affects()]
    rows: Dict[str, Dict[str, Any]] = {}
    for name, m in fixes.items():
        row: Dict[str, Any] = {"affects": name in owner and owner[name].affects(), "applies": m.applies()}
        if row["applies"]:
            together = release if m in release else [*release, m]
            row.update(unpatched=_probe(m), patched=_probe(m, m), with_all=_probe(m, *together),
                       with_all_reversed=_probe(m, *reversed(together)))
        rows[name] = row
    return {"version": VERSION, "fixes": rows}


def report_problems(report: Mapping[str, Any]) -> List[str]:
    problems = []
    for name, row in report["fixes"].items():
        if row["affects"] != row["applies"]:
            problems.append(f"{name}: the ledger says pysyncobj {report['version']} "
                            f"{'has' if row['affects'] else 'does not have'} the bug, the fix "
                            f"{'applies' if row['applies'] else 'does not apply'}")
        if not row["applies"]:
            continue
        if row["unpatched"] is not False:
            problems.append(f"{name}: the probe passes on unmodified pysyncobj {report['version']}")
        for key, what in (("patched", "with the fix"), ("with_all", "with every fix of the release"),
                          ("with_all_reversed", "with every fix of the release, installed in reverse order")):
            if row[key] is not True:
                why = f" ({row[key]})" if isinstance(row[key], str) else ""
                problems.append(f"{name}: the probe fails {what}{why}")
    return problems


def test_every_fix_applies_exactly_where_its_bug_is_and_changes_behaviour():
    """On the installed release: the probe of each applicable fix is False unpatched and True patched, each
    fix applies iff the ledger says this release has its bug, and the fixes install together."""
    report = release_report()
    assert report_problems(report) == []
    applying = [n for n, row in report["fixes"].items() if row["applies"]]
    assert applying == [n for n in KNOWN_FIXES if n in known_fixes()]


def _report_problems_with(fixes: Mapping[str, Mutation], **bugs: Bug) -> List[str]:
    """:func:`report_problems` for a doctored ledger (ledger ids as ``b<id>=``) and a doctored set of fixes."""
    ledger = dict(LEDGER)
    ledger.update({int(key[1:]): bug for key, bug in bugs.items()})
    return report_problems(release_report(ledger, fixes))


def test_the_release_check_catches_a_wrong_range():
    installed = tuple(int(p) for p in VERSION.split("."))
    other = next(r for r in RELEASES if tuple(int(p) for p in r.split(".")) != installed)
    fix = KNOWN_FIXES["stale_snapshot_keeps_log"]  # applies on every release
    assert _report_problems_with({fix.name: fix}, b12=dataclasses.replace(LEDGER[12], first=other, last=other)) == [
        f"stale_snapshot_keeps_log: the ledger says pysyncobj {VERSION} does not have the bug, the fix applies"]


def test_the_release_check_catches_a_probe_that_cannot_tell_the_fix_apart():
    real = KNOWN_FIXES["snapshot_chunk_commit"]
    blind = dataclasses.replace(real, name="blind", probe=lambda p: True)
    assert _report_problems_with({"blind": blind}, b3=dataclasses.replace(LEDGER[3], fix="blind")) == [
        f"blind: the probe passes on unmodified pysyncobj {VERSION}"]
    idle = dataclasses.replace(real, name="idle", new=real.old)  # installs, changes nothing
    assert _report_problems_with({"idle": idle}, b3=dataclasses.replace(LEDGER[3], fix="idle")) == [
        "idle: the probe fails with the fix", "idle: the probe fails with every fix of the release",
        "idle: the probe fails with every fix of the release, installed in reverse order"]


def test_the_release_check_catches_fixes_that_do_not_install_together():
    real = KNOWN_FIXES["snapshot_chunk_commit"]
    assert _report_problems_with({real.name: real}) == []
    first_line = real.old.splitlines(keepends=True)[0]
    # Rewrites the first line snapshot_chunk_commit patches: installed before it, that fix no longer applies.
    clash = dataclasses.replace(real, name="clash", old=first_line, new=first_line.replace("=True", " = True"))
    problems = _report_problems_with({"clash": clash, real.name: real}, b1=dataclasses.replace(LEDGER[1], fix="clash"))
    apart = [p.split(":")[0] for p in problems if "(does not install: mutation 'snapshot_chunk_commit'" in p]
    assert apart == ["clash", "snapshot_chunk_commit"], problems  # each row's probe with every fix of the release


# --------------------------------------------------------------------------------------------
# Every release, one subprocess each
# --------------------------------------------------------------------------------------------
_REPORT = "import json, test_ledger; print(json.dumps(test_ledger.release_report()))"


def _releases_dir() -> Path:
    base = os.environ.get("RAFT_HARNESS_RELEASES")
    if base:
        return Path(base)
    if os.environ.get("CI"):
        pytest.fail("RAFT_HARNESS_RELEASES is not set: under CI every fix must be checked on every release "
                    "(.ci/run installs them into .ci/releases/<version> and exports the variable)")
    pytest.skip("RAFT_HARNESS_RELEASES is not set (a directory with one subdirectory per pysyncobj release, "
                "each a `pip install --target` of it, as .ci/run builds): the fixes are checked on the "
                "installed release only")


def _report_on(release_dir: Path) -> "subprocess.Popen[str]":
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join([str(release_dir), str(ROOT), str(ROOT / "tests")]))
    return subprocess.Popen([sys.executable, "-c", _REPORT], cwd=str(ROOT), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def every_release_problems(base: Path, releases: Sequence[str] = RELEASES) -> List[str]:
    """:func:`report_problems` for each release under ``base``, one subprocess each (all at once)."""
    missing = [v for v in releases if not (base / v / "pysyncobj" / "syncobj.py").is_file()]
    problems = [f"{base} lacks the releases {missing}"] if missing else []
    running = [(v, _report_on(base / v)) for v in releases if v not in missing]
    for release, process in running:
        out, err = process.communicate(timeout=600)
        if process.returncode != 0:
            problems.append(f"{release}: the report failed:\n{err}")
            continue
        report = json.loads(out.splitlines()[-1])
        if report["version"] != release:
            problems.append(f"{release}: {base / release} holds pysyncobj {report['version']}")
        problems += [f"{release}: {p}" for p in report_problems(report)]
    return problems


def test_every_fix_on_every_release():
    """Each fix's probe per release (unpatched False, patched True, with the release's other fixes True),
    and each fix applies on exactly the releases its bug affects."""
    assert every_release_problems(_releases_dir()) == []


def test_the_every_release_check_catches_a_wrong_or_missing_release(tmp_path):
    base = _releases_dir()
    (tmp_path / "0.3.16").symlink_to(base / "0.3.11")
    assert every_release_problems(tmp_path, ("0.3.16", "0.3.17")) == [
        f"{tmp_path} lacks the releases ['0.3.17']", f"0.3.16: {tmp_path / '0.3.16'} holds pysyncobj 0.3.11"]
