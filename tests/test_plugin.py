"""The pytest plugin, seen from a project of its own: options, profiles, fixtures, and staying out of the way.

Each test writes a tiny project into a temporary directory (``pytester``) and
runs pytest on it in a fresh process, so the plugin is loaded the way an
installed raft-harness loads it: through a ``pytest11`` entry point named
``raft_harness``.  That entry point is declared by a throw-away ``.dist-info``
directory on ``PYTHONPATH``, so the tests run the same from a checkout that was
never installed and from a wheel.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.fuzz import profiles
from harness.fuzz.plugin import NETWORK_CHOICES, default_seed

pytest_plugins = ["pytester"]

OPTIONS = ("--raft-network", "--raft-known-fixes", "--raft-storage", "--raft-soak", "--raft-slow")
OLD_SPELLINGS = ("--network", "--known-fixes", "--storage", "--runsoak", "--runslow")


@pytest.fixture
def project(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
            monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project directory with raft-harness importable and its entry point declared, no CI variable."""
    site = tmp_path_factory.mktemp("site")
    info = site / "raft_harness_entry_point-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: raft-harness-entry-point\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[pytest11]\nraft_harness = harness.fuzz.plugin\n")
    checkout = str(Path(harness.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), checkout,
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def settings_of(name: str):
    from hypothesis import settings

    profiles.register()
    return settings.get_profile(name)


def test_importing_the_plugin_imports_neither_pysyncobj_nor_the_simulator():
    code = ("import sys, harness.fuzz.plugin; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pysyncobj' or m.startswith('harness.sim')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # What makes that possible: the package's public names are imported on first use.
    assert sorted(harness._HOME) == sorted(harness.__all__)
    assert all(getattr(harness, name) is not None for name in harness.__all__)


def test_options_are_one_help_group_with_the_old_spellings(project):
    result = run(project, "--help")
    assert result.ret == 0
    text = result.stdout.str()
    group = text[text.index("raft-harness (Raft clusters on pysyncobj):"):]
    group = group[:group.index("\n\n")]
    for option in OPTIONS + OLD_SPELLINGS:
        assert option in group, option
    assert "{fifo,unreliable,all}" in group and NETWORK_CHOICES == ("fifo", "unreliable", "all")


def test_an_unknown_network_is_a_usage_error(project):
    project.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = run(project, "--raft-network=carrier-pigeon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --raft-network/--network: invalid choice*"])


def test_old_spellings_set_the_same_options(project):
    project.makepyfile(test_options="""
        def test_options(pytestconfig):
            print("OPTIONS", [pytestconfig.getoption(d) for d in
                  ("raft_network", "raft_known_fixes", "raft_storage", "raft_soak", "raft_slow")])
    """)
    new = run(project, "-s", "--raft-network=all", "--raft-storage", "--raft-soak", "--raft-slow")
    old = run(project, "-s", "--network=all", "--storage", "--runsoak", "--runslow")
    for result in (new, old):
        assert result.ret == 0
        assert "OPTIONS ['all', False, True, True, True]" in result.stdout.str()


def test_profiles_are_registered_and_raft_dev_is_the_default(project):
    project.makepyfile(test_profiles="""
        from hypothesis import settings

        def test_profiles():
            for name in %r:
                settings.get_profile(name)
            print("PROFILE", settings.get_current_profile_name(), settings().max_examples)
    """ % ([profiles.PREFIX + n for n in profiles.NAMES],))
    default = run(project, "-s")
    assert default.ret == 0
    default.stdout.fnmatch_lines([f"*PROFILE raft-dev {settings_of('raft-dev').max_examples}*"])
    chosen = run(project, "-s", "--hypothesis-profile=raft-ci")
    chosen.stdout.fnmatch_lines([f"*PROFILE raft-ci {settings_of('raft-ci').max_examples}*"])


def test_a_conftest_profile_wins_over_the_plugin_default(project):
    project.makeconftest("""
        from hypothesis import settings

        settings.register_profile("mine", max_examples=7)
        settings.load_profile("mine")
    """)
    project.makepyfile(test_profile="""
        from hypothesis import settings

        def test_profile():
            print("PROFILE", settings.get_current_profile_name())
    """)
    run(project, "-s").stdout.fnmatch_lines(["*PROFILE mine*"])


def test_markers_select_the_network_and_opt_in_tiers(project):
    project.makepyfile(test_marked="""
        import pytest

        @pytest.mark.fifo
        def test_fifo(): pass

        @pytest.mark.unreliable
        def test_unreliable(): pass

        @pytest.mark.slow
        def test_slow(): pass

        def test_plain(): pass
    """)
    default = run(project, "-rs", "--strict-markers")
    default.assert_outcomes(passed=2, skipped=1, deselected=1)
    default.stdout.fnmatch_lines(["*slow: run with --raft-slow*"])
    run(project, "--raft-network=unreliable", "--raft-slow").assert_outcomes(passed=3, deselected=1)


_CLUSTER_TESTS = """
    import json, os
    import pytest

    def _record(c):
        with open(os.environ["RECORD"], "a") as f:
            f.write(json.dumps([c.seed, c.network_model, str(c.node_dir("n1"))]) + "\\n")

    def test_passes(cluster):
        c = cluster()
        c.wait_leader()
        _record(c)

    def test_fails(cluster):
        first, second = cluster(), cluster(nodes=1, seed=5)
        first.wait_leader()
        first.must_put("k", 1)
        first.storage.enable("dump_write_fails", "n1")
        first.force_snapshot("n1")
        first.run_for(0.5)
        _record(first); _record(second)
        assert first.leader() == "no such node"

    @pytest.mark.unreliable
    def test_marked_unreliable(cluster):
        _record(cluster())
"""


def test_cluster_fixture_closes_its_clusters_and_reports_them_when_a_test_fails(project, tmp_path, monkeypatch):
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("RECORD", str(record))
    project.makepyfile(test_clusters=_CLUSTER_TESTS)
    result = run(project, "--raft-network=all")
    result.assert_outcomes(passed=2, failed=1)
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(seed, network) for seed, network, _ in rows] == [
        (default_seed("test_clusters.py::test_passes"), "fifo"),
        (default_seed("test_clusters.py::test_fails"), "fifo"), (5, "fifo"),
        (default_seed("test_clusters.py::test_marked_unreliable"), "unreliable")]
    assert not any(os.path.exists(directory) for _, _, directory in rows)  # closed: node directories gone
    text = result.stdout.str()
    # One section per cluster of the failing test (and none for the passing ones).
    assert text.count("raft-harness cluster 1") == 1 and text.count("raft-harness cluster 2") == 1
    section = text[text.index("raft-harness cluster 1"):text.index("raft-harness cluster 2")]
    assert f"seed={default_seed('test_clusters.py::test_fails')}" in section
    assert "node  inc  role       term" in section and "last messages delivered:" in section
    # pysyncobj's own warning is in the section, tagged with the node, and not in pytest's captured log.
    assert "n1  WARNING  Failed to store full dump" in section
    assert "Captured log" not in text


def test_a_node_class_that_is_not_a_syncobj_is_a_one_line_failure(project):
    project.makepyfile(test_bad="""
        def test_bad(cluster):
            cluster(node_class=dict)
    """)
    result = run(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["cluster(): node_class must be a pysyncobj.SyncObj subclass "
                                 "(e.g. harness.KVStore), got <class 'dict'>"])
    text = result.stdout.str()
    assert "Traceback" not in text and "check_arguments" not in text and "def make" not in text


def test_a_project_with_the_plugin_switched_off_is_unaffected(project):
    project.makepyfile(test_plain="""
        from hypothesis import given, settings, strategies as st

        @given(st.integers())
        def test_plain(x):
            assert isinstance(x, int)

        def test_profile():
            print("PROFILE", settings.get_current_profile_name())
    """)
    on = run(project, "-s")
    on.assert_outcomes(passed=2)
    on.stdout.fnmatch_lines(["*PROFILE raft-dev*"])
    off = run(project, "-s", "-p", "no:raft_harness")
    off.assert_outcomes(passed=2)
    off.stdout.fnmatch_lines(["*PROFILE default*"])
    unknown = run(project, "-p", "no:raft_harness", "--raft-network=fifo")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(["*unrecognized arguments: --raft-network=fifo*"])
