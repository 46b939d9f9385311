"""The default replicated state machine: a small key-value store.

Reads go through the log (:meth:`KVStore.get` is replicated) so a client read
is linearizable; :meth:`KVStore.local_get` is the stale-able local read.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from pysyncobj import SyncObj, replicated


class KVStore(SyncObj):
    def __init__(self, self_node, other_nodes, conf, **kwargs) -> None:
        super().__init__(self_node, other_nodes, conf, **kwargs)
        # Set after SyncObj.__init__ so that it is part of the snapshot.
        self._data: Dict[Any, Any] = {}

    @replicated
    def set(self, key: Any, value: Any) -> Any:
        self._data[key] = value
        return value

    @replicated
    def get(self, key: Any) -> Optional[Any]:
        return self._data.get(key)

    def local_get(self, key: Any) -> Optional[Any]:
        return self._data.get(key)
