"""An example database seen through a key prefix: one store, separate namespaces.

Hypothesis deletes a saved example when replaying it no longer fails.  Runs
on pysyncobj patched with the known fixes (``--raft-known-fixes``) and runs on
the unmodified release therefore must not share keys: each would replay, find
passing, and delete the other's counterexamples.  The pytest plugin
(:mod:`harness.fuzz.plugin`) puts the patched runs under their own prefix of
the same database (directory or Redis).
"""
from __future__ import annotations

from typing import Iterable

from hypothesis.database import ExampleDatabase


class KeyPrefixedDatabase(ExampleDatabase):
    """``base`` with every key prefixed by ``prefix``."""

    def __init__(self, base: ExampleDatabase, prefix: bytes) -> None:
        super().__init__()
        if not isinstance(base, ExampleDatabase):
            raise TypeError(f"base must be a hypothesis ExampleDatabase, got {base!r}")
        if not isinstance(prefix, bytes) or not prefix:
            raise ValueError(f"prefix must be non-empty bytes, got {prefix!r}")
        self.base, self.prefix = base, prefix

    def __repr__(self) -> str:
        return f"KeyPrefixedDatabase({self.base!r}, {self.prefix!r})"

    def save(self, key: bytes, value: bytes) -> None:
        self.base.save(self.prefix + key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self.base.fetch(self.prefix + key)

    def delete(self, key: bytes, value: bytes) -> None:
        self.base.delete(self.prefix + key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.base.move(self.prefix + src, self.prefix + dest, value)
