"""This repository's own pytest setup: only that a checkout works without ``pip install``.

Everything else (options, markers, profiles, collection rules, fixtures) is the harness' pytest plugin,
:mod:`harness.fuzz.plugin`, which an installed raft-harness registers through its ``pytest11`` entry
point.  Run from a checkout that was never installed (``PYTHONPATH=.``, or an environment installed
from an older commit), the entry point is missing and this file registers the plugin under the entry
point's name instead, so it is never registered twice and ``-p no:raft_harness`` still switches it off.
"""


def pytest_addoption(parser, pluginmanager):
    if pluginmanager.get_plugin("raft_harness") is None and not pluginmanager.is_blocked("raft_harness"):
        from harness.fuzz import plugin

        pluginmanager.register(plugin, "raft_harness")
