"""Hooks on the files pysyncobj opens and renames, for storage fault injection.

pysyncobj writes its dumps with the builtin ``open`` and ``atomicReplace``
looked up in ``pysyncobj.serializer``, and its journal's ``.meta`` sidecar
(and the file behind the journal's mmap) with ``open`` looked up in
``pysyncobj.journal``.  Shadowing those module globals lets
:mod:`harness.sim.storage` see (and fail) every write without modifying
pysyncobj's code; which names to shadow, and which open modes write, is
release knowledge and so lives here.  What a hook does with a file is the
simulation's business.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import pysyncobj.journal as _journal
import pysyncobj.serializer as _serializer

#: ``on_open(path, file) -> file``: sees a file pysyncobj opened for writing, returns what pysyncobj gets.
OpenHook = Callable[[Any, Any], Any]

#: What :func:`install` replaced (None: the name was not a global of that module, the builtin was used).
Saved = Dict[str, Optional[Any]]

_NAMES = ((_serializer, "open", "serializer.open"),
          (_serializer, "atomicReplace", "serializer.atomicReplace"),
          (_journal, "open", "journal.open"))


def install(on_dump_open: OpenHook, on_journal_open: OpenHook,
            after_replace: Callable[[Any], None]) -> Saved:
    """Route pysyncobj's file writes through the hooks until :func:`restore`.

    ``on_dump_open`` gets every file ``pysyncobj.serializer`` opens for writing
    (dumps, a received snapshot), ``on_journal_open`` every file
    ``pysyncobj.journal`` opens for writing (the ``.meta`` sidecar; the journal's
    mmap backing is opened ``r+b`` and never written through, so it is not
    passed), and ``after_replace(src)`` is called after each ``atomicReplace(src, dst)``.
    """
    saved: Saved = {
        "serializer.open": _serializer.__dict__.get("open"),
        "serializer.atomicReplace": _serializer.atomicReplace,
        "journal.open": _journal.__dict__.get("open"),
    }
    original_replace = saved["serializer.atomicReplace"]

    def serializer_open(file, mode="r", *args, **kwargs):
        f = open(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax+"):
            return on_dump_open(file, f)
        return f

    def journal_open(file, mode="r", *args, **kwargs):
        f = open(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax"):  # "r+b" is the journal's mmap backing, never written through
            return on_journal_open(file, f)
        return f

    def atomic_replace(src, dst):
        result = original_replace(src, dst)
        after_replace(src)
        return result

    _serializer.open = serializer_open
    _serializer.atomicReplace = atomic_replace
    _journal.open = journal_open
    return saved


def restore(saved: Saved) -> None:
    """Put back what :func:`install` replaced (a name that was not a module global is removed again)."""
    for module, name, key in _NAMES:
        value = saved[key]
        if value is None:
            module.__dict__.pop(name, None)
        else:
            setattr(module, name, value)
