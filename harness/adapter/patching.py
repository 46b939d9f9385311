"""The engine that patches pysyncobj's source: one method of ``SyncObj`` at a time, for a ``with`` block.

A *mutation* (:class:`Mutation`) is a source-level patch of one
``pysyncobj.syncobj.SyncObj`` method.  The project uses it for two different
purposes, kept in two registries that share this engine:

* *injected bugs* (:data:`harness.adapter.injected_bugs.INJECTED_BUGS`): classic Raft
  bugs we inject to show that the checker catches them;
* *fixes* (:data:`harness.adapter.fixes.KNOWN_FIXES`): minimal repairs of real
  pysyncobj bugs the harness found (FINDINGS.md), so a campaign can hunt for
  the next one.

:func:`inject` takes names of either kind (recorded counterexamples store the
names of the patches they ran on, and replay reinstalls them)::

    from harness.adapter.patching import inject

    with inject("vote_twice"):
        run_state_machine_as_test(MyMachine, settings=...)   # must raise

How a patch goes in: the method's source (``inspect.getsource``) gets exactly
one ``str.replace``, is compiled again in ``pysyncobj.syncobj``'s globals inside
a ``class SyncObj:`` wrapper (so ``self.__x`` still mangles to
``self._SyncObj__x``) and is installed on ``SyncObj`` until the block exits,
also on an exception.  If the snippet to replace is not in this pysyncobj
release exactly once, :class:`MutationNotApplicable` says so: a patch that
silently fails to apply would make a test built on it meaningless.  For the
same reason every mutation has a *probe* (:mod:`harness.adapter.probes`): a
direct, single-node check that the patched method really behaves differently
(:meth:`Mutation.verify`).

Caveats
    * pysyncobj binds ``__onMessageReceived`` (and the other transport
      callbacks) when a node is constructed: only nodes created *inside* the
      ``with`` block run the mutated message handler.  Start clusters inside it.
    * Patching is process-global (a class attribute): never run other tests
      concurrently in the same process (pytest-xdist workers are separate
      processes, which is fine).
    * Several mutations can be stacked (``inject("a", "b")``), also on the same
      method: later patches apply to the source already patched by earlier ones.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import linecache
import textwrap
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import pysyncobj.syncobj as _syncobj

from harness.adapter import probes
from harness.adapter.observe import VERSION

__all__ = ["LOAD_DUMP", "ON_MESSAGE", "Mutation", "MutationNotApplicable", "active", "inject", "installed", "verify_all"]

_TARGET = _syncobj.SyncObj

#: The mangled name of SyncObj's message handler, the method most patches change.
ON_MESSAGE = "_SyncObj__onMessageReceived"
#: The mangled name of the method that loads a dump: at a restart, and when a snapshot is installed.
LOAD_DUMP = "_SyncObj__loadDumpFile"


class MutationNotApplicable(RuntimeError):
    """The code a mutation patches is not in the installed pysyncobj (exactly once)."""


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One patch (a injected bug or a fix): replace ``old`` by ``new`` in the source of ``SyncObj.<method>``.

    ``variants`` are alternative ``(old, new)`` pairs for other pysyncobj
    releases; the first whose ``old`` occurs exactly once is applied.  Snippets
    are written against the *dedented* method source.
    """

    name: str
    title: str
    description: str
    method: str  # attribute name on SyncObj, already mangled (``_SyncObj__onMessageReceived``)
    old: str
    new: str
    probe: Callable[[probes.Probe], bool]
    probe_peers: Tuple[str, ...] = ("b", "c")
    variants: Tuple[Tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.name}: {self.title}"

    def patch_source(self, source: str) -> str:
        """``source`` (a dedented method) with this bug in it; MutationNotApplicable if it can't be."""
        counts = []
        for old, new in ((self.old, self.new),) + self.variants:
            n = source.count(old)
            if n == 1:
                return source.replace(old, new)
            counts.append(n)
        raise MutationNotApplicable(
            f"mutation {self.name!r}: pysyncobj {VERSION} does not have the code it patches in "
            f"SyncObj.{self.method} (snippet found {counts} times, need exactly once); this release "
            f"may not have that code, or already behave that way.  Snippet:\n{self.old}")

    def patched_method_source(self) -> str:
        """The source this mutation would install, from the installed pysyncobj; MutationNotApplicable if none."""
        current = getattr(_TARGET, self.method, None)
        if current is None:
            raise MutationNotApplicable(f"mutation {self.name!r}: pysyncobj {VERSION} has no "
                                        f"SyncObj.{self.method}; this release doesn't have that code")
        return self.patch_source(_method_source(current))

    def applies(self) -> bool:
        """Whether the installed pysyncobj has the code this mutation patches (exactly once)."""
        try:
            self.patched_method_source()
        except MutationNotApplicable:
            return False
        return True

    def verify(self) -> None:
        """Check directly that the patch changes behaviour: the probe must pass only when injected.

        Raises MutationNotApplicable if this release lacks the code, AssertionError if the probe
        does not tell the unmodified and the patched method apart.
        """
        self.patched_method_source()
        if _run_probe(self):
            raise AssertionError(f"probe of patch {self.name!r} already passes on unmodified pysyncobj "
                                 f"{VERSION}: the probe is wrong or this release behaves that way already")
        with inject(self):
            if not _run_probe(self):
                raise AssertionError(f"patch {self.name!r} was installed but its probe does not see the "
                                     f"change: the patch does not change behaviour on pysyncobj {VERSION}")


def _run_probe(m: Mutation) -> bool:
    """Whether ``m``'s probe passes on the code installed right now (patched or not)."""
    return probes.run(m.probe, m.probe_peers)


def _registries() -> Tuple[Dict[str, Mutation], Dict[str, Mutation]]:
    """(injected bugs, fixes) by name; imported here because both modules import this engine."""
    from harness.adapter.fixes import KNOWN_FIXES
    from harness.adapter.injected_bugs import INJECTED_BUGS

    clash = set(INJECTED_BUGS) & set(KNOWN_FIXES)
    if clash:
        raise RuntimeError(f"names used by both a injected bug and a fix: {sorted(clash)}")
    return INJECTED_BUGS, KNOWN_FIXES


# --------------------------------------------------------------------------------------------
# Installing patches
# --------------------------------------------------------------------------------------------
_SOURCE_ATTR = "__mutation_source__"
_counter = [0]


def _method_source(func) -> str:
    """Dedented source of ``func``: pysyncobj's, or the patched text of an earlier mutation."""
    patched = getattr(func, _SOURCE_ATTR, None)
    if patched is not None:
        return patched
    return textwrap.dedent(inspect.getsource(func))


def _compile(m: Mutation, source: str):
    _counter[0] += 1
    filename = f"<mutation {m.name} #{_counter[0]}: SyncObj.{m.method}>"
    wrapped = "class SyncObj:\n" + textwrap.indent(source, "    ")
    # Register the text so tracebacks through the patched method show its lines.
    linecache.cache[filename] = (len(wrapped), None, wrapped.splitlines(True), filename)
    namespace: dict = {}
    exec(compile(wrapped, filename, "exec"), vars(_syncobj), namespace)
    func = namespace["SyncObj"].__dict__.get(m.method)
    if func is None:
        raise MutationNotApplicable(f"mutation {m.name!r}: compiling SyncObj.{m.method} did not define it "
                                    f"(defined: {sorted(namespace['SyncObj'].__dict__)})")
    func.__qualname__ = f"SyncObj.{m.method}"
    setattr(func, _SOURCE_ATTR, source)
    setattr(func, "__mutation__", m.name)
    return func


#: Names of the patches installed right now, in installation order.
_INSTALLED: List[str] = []


def installed() -> List[str]:
    """Every patch installed right now (injected bugs and fixes), in the order they went in;
    a counterexample records them so that its replay runs on the same code."""
    return list(_INSTALLED)


@contextlib.contextmanager
def inject(*mutations: Union[str, Mutation]) -> Iterator[List[Mutation]]:
    """Install the given patches (names of injected bugs or of fixes, or Mutation objects) on ``pysyncobj.syncobj.SyncObj`` for the duration of the block.

    Every patch is compiled (and checked to apply) before the block starts, and
    the original attributes are put back on exit, also when the block raises.  A patch an enclosing
    block installed already stays as it is (a finding's test that installs a fix runs the same inside
    a ``--raft-known-fixes`` run or a triage replay).
    """
    if not mutations:
        raise ValueError("inject() needs at least one mutation")
    injected_bugs, fixes = _registries()
    known = {**injected_bugs, **fixes}
    unknown = [m for m in mutations if not isinstance(m, Mutation) and m not in known]
    if unknown:
        raise KeyError(f"unknown mutation(s) {unknown}; injected bugs: {list(injected_bugs)}, known fixes: {list(fixes)}")
    mutations = [m if isinstance(m, Mutation) else known[m] for m in mutations]
    mutations = [m for i, m in enumerate(mutations)
                 if m.name not in _INSTALLED and m.name not in {n.name for n in mutations[:i]}]
    saved: List[Tuple[str, bool, object]] = []
    depth = len(_INSTALLED)
    try:
        for m in mutations:
            had = m.method in vars(_TARGET)
            func = _compile(m, m.patched_method_source())
            saved.append((m.method, had, vars(_TARGET).get(m.method)))
            setattr(_TARGET, m.method, func)
            _INSTALLED.append(m.name)
        yield mutations
    finally:
        for method, had, original in reversed(saved):
            if had:
                setattr(_TARGET, method, original)
            else:
                delattr(_TARGET, method)
        del _INSTALLED[depth:]


def active() -> Dict[str, str]:
    """Methods of SyncObj currently patched, and by which mutation (empty when none is injected)."""
    return {k: v.__mutation__ for k, v in vars(_TARGET).items() if hasattr(v, "__mutation__")}


def verify_all(registry: Mapping[str, Mutation]) -> Dict[str, Optional[str]]:
    """Run every probe of ``registry`` (``INJECTED_BUGS`` or ``KNOWN_FIXES``); name -> None if the patch
    applies and changes behaviour, else the reason."""
    out: Dict[str, Optional[str]] = {}
    for name, m in registry.items():
        try:
            m.verify()
            out[name] = None
        except (AssertionError, MutationNotApplicable) as e:
            out[name] = str(e)
    return out
