"""A deterministic discrete-event queue in virtual time.

Ties are broken by insertion order, never by comparing callbacks or by hash
order, so the same schedule always runs the same way.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable, List, Optional, Tuple


class EventQueue:
    def __init__(self) -> None:
        self._heap: List[Tuple[float, int, Callable[..., Any], tuple]] = []
        self._seq = itertools.count()

    def at(self, time: float, action: Callable[..., Any], *args: Any) -> None:
        heapq.heappush(self._heap, (time, next(self._seq), action, args))

    def next_time(self) -> Optional[float]:
        return self._heap[0][0] if self._heap else None

    def pop(self) -> Tuple[float, Callable[..., Any], tuple]:
        time, _, action, args = heapq.heappop(self._heap)
        return time, action, args

    def __len__(self) -> int:
        return len(self._heap)
