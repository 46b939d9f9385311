"""The layout of harness/: pysyncobj's internals stay in harness.adapter, modules stay small.

* Only :mod:`harness.adapter` reads pysyncobj's name-mangled state or swaps
  attributes of pysyncobj's modules and classes (see its docstring for why).
  The rest of the harness, the properties and ``conftest.py`` go through its
  functions.  (``tests/`` may look at internals to check the adapter, and
  ``bench/bench_core.py`` drives bare pysyncobj on purpose as the baseline the
  harness' overhead is measured against.)
* No module of harness/ is longer than :data:`MAX_LINES`.
* ``harness/__init__.py`` lists its exports in a sorted ``__all__``.

Each check is a function of source text, so ``test_*_catches_*`` show on
made-up sources that the checks can fail.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterator, List, Set

import pysyncobj
import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "harness"
ADAPTER = HARNESS / "adapter"

#: No module in harness/ longer than this.  (Spelled as a product on purpose: Hypothesis adds every
#: integer literal of a loaded module to the pool its derandomized tests draw from, and this file is
#: loaded with them; see tests/test_injected_bugs.py.)
MAX_LINES = 55 * 10


def _pysyncobj_classes() -> Set[str]:
    """Every class pysyncobj defines (parsed, not imported: some of its modules need extras)."""
    names = set()
    for path in Path(pysyncobj.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names.add(node.name)
    return names


#: A name-mangled attribute of a pysyncobj class: ``_SyncObj__raftLog``, ``_FileJournal__journalFile``, ...
MANGLED = re.compile(r"_(?:%s)__\w" % "|".join(sorted(_pysyncobj_classes(), key=len, reverse=True)))


def _outside_adapter() -> List[Path]:
    paths = [p for p in sorted(HARNESS.rglob("*.py")) if ADAPTER not in p.parents]
    return paths + sorted((ROOT / "properties").rglob("*.py")) + [ROOT / "conftest.py"]


def _pysyncobj_names(tree: ast.AST) -> Set[str]:
    """Local names bound to pysyncobj modules or to anything imported from them."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "pysyncobj" or alias.name.startswith("pysyncobj."):
                    names.add(alias.asname or alias.name.partition(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and (node.module == "pysyncobj" or node.module.startswith("pysyncobj.")):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _root(node: ast.AST) -> ast.AST:
    """``a`` of ``a.b.c``, ``a.__dict__[k]``, ``vars(a)[k]``."""
    while True:
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "vars" \
                and node.args:
            node = node.args[0]
        else:
            return node


def internals_used(source: str) -> Iterator[str]:
    """What in ``source`` belongs in harness.adapter: mangled pysyncobj attributes, and writes to
    attributes of pysyncobj's modules and classes (assignment, ``del``, ``setattr``/``delattr``,
    changes to their ``__dict__``)."""
    for lineno, line in enumerate(source.splitlines(), 1):
        for m in MANGLED.finditer(line):
            yield f"line {lineno}: {m.group(0)}..."
    tree = ast.parse(source)
    bound = _pysyncobj_names(tree)

    def on_pysyncobj(node: ast.AST) -> bool:
        root = _root(node)
        return root is not node and isinstance(root, ast.Name) and root.id in bound

    for node in ast.walk(tree):
        targets: List[ast.AST] = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("setattr", "delattr") and node.args:
                root = _root(node.args[0])
                if isinstance(root, ast.Name) and root.id in bound:
                    yield f"line {node.lineno}: {func.id}() on pysyncobj's {root.id}"
            elif isinstance(func, ast.Attribute) and func.attr in ("pop", "update", "setdefault", "__setitem__") \
                    and (isinstance(func.value, ast.Call) or (isinstance(func.value, ast.Attribute)
                                                               and func.value.attr == "__dict__")) \
                    and on_pysyncobj(func.value):
                yield f"line {node.lineno}: {func.attr}() on the namespace of pysyncobj's {_root(func.value).id}"
        for target in targets:
            for t in target.elts if isinstance(target, ast.Tuple) else [target]:
                if isinstance(t, (ast.Attribute, ast.Subscript)) and on_pysyncobj(t):
                    yield f"line {t.lineno}: writes {ast.unparse(t)}"


def test_only_the_adapter_touches_pysyncobj_internals():
    found = {str(p.relative_to(ROOT)): list(internals_used(p.read_text(encoding="utf-8")))
             for p in _outside_adapter()}
    found = {path: hits for path, hits in found.items() if hits}
    assert not found, f"pysyncobj internals outside harness/adapter/ (move them into an adapter function): {found}"


@pytest.mark.parametrize("source", [
    "x = node._SyncObj__raftLog\n",
    "name = '_FileJournal__journalFile'\n",
    "import pysyncobj.syncobj as _syncobj\n_syncobj.monotonicTime = clock\n",
    "import pysyncobj.syncobj as a, pysyncobj.serializer as b\na.random, b.gzip = r, g\n",
    "import pysyncobj.serializer\npysyncobj.serializer.open = hooked\n",
    "from pysyncobj import journal\nsetattr(journal, 'open', hooked)\n",
    "from pysyncobj import serializer\nserializer.__dict__.pop('open', None)\n",
    "from pysyncobj.syncobj import SyncObj\nSyncObj._onTick = patched\n",
    "from pysyncobj.syncobj import SyncObj\nvars(SyncObj)['_onTick'] = patched\n",
    "import pysyncobj.syncobj as so\ndel so.random\n",
])
def test_internals_check_catches(source):
    assert list(internals_used(source))


@pytest.mark.parametrize("source", [
    "import pysyncobj.syncobj as so\nif so.monotonicTime == clock:\n    pass\n",
    "from pysyncobj.transport import Transport\nclass T(Transport):\n    def __init__(self):\n"
    "        self._connections = {}\n        setattr(self, 'ready', True)\n",
    "from pysyncobj import SyncObjConf\nconf = SyncObjConf(autoTick=False)\nconf2 = conf\n",
    "import random\nrandom.random = lambda: 0.5\n",
])
def test_internals_check_lets_through(source):
    assert not list(internals_used(source))


def _too_long() -> List[str]:
    out = []
    for path in sorted(HARNESS.rglob("*.py")):
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            out.append(f"{path.relative_to(ROOT)} ({n})")
    return out


def test_no_module_in_harness_is_too_long():
    assert not _too_long(), f"over {MAX_LINES} lines: {', '.join(_too_long())}"


def _unsorted_all(source: str) -> List[str]:
    """Why the ``__all__`` of ``source`` is not a sorted list of distinct names (empty: it is)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            names = ast.literal_eval(node.value)
            problems = []
            if list(names) != sorted(names):
                problems.append(f"not sorted: {list(names)}")
            if len(set(names)) != len(names):
                problems.append("names repeated")
            return problems
    return ["no __all__"]


def test_harness_all_is_sorted():
    assert not _unsorted_all((HARNESS / "__init__.py").read_text(encoding="utf-8"))


@pytest.mark.parametrize("source", ["x = 1\n", "__all__ = ['b', 'a']\n", "__all__ = ['a', 'a']\n"])
def test_all_check_catches(source):
    assert _unsorted_all(source)


def test_all_check_lets_a_sorted_list_through():
    assert not _unsorted_all("__all__ = ['A', 'a', 'b']\n")
