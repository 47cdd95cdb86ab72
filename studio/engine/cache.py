"""The result cache: node outputs by Merkle key, least recently used first out, bounded in
bytes. Models are held by the runtime's model manager; the cache only keeps references, so a
model shared by many entries is not counted or duplicated here."""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def estimate_bytes(value: Any, _depth: int = 0) -> int:
    """A cheap upper estimate of the memory a node's outputs hold.

    Arrays and tensors report ``nbytes`` (duck typed, so the engine needs neither numpy nor
    torch); containers are summed; anything else (a model handle, say) is owned elsewhere and
    counted as a small object.
    """
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if _depth > 8:
        return 64
    if isinstance(value, (list, tuple)):
        return 64 + sum(estimate_bytes(item, _depth + 1) for item in value)
    if isinstance(value, dict):
        return 64 + sum(estimate_bytes(item, _depth + 1) for item in value.values())
    if isinstance(value, (str, bytes)):
        return sys.getsizeof(value)
    return 64


@dataclass(frozen=True)
class CacheEntry:
    outputs: tuple[Any, ...]
    files: tuple[Path, ...]
    size: int


class ResultCache:
    """Bounded LRU map from cache key to a node's outputs and the files it wrote."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: str) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: str, outputs: tuple[Any, ...], files: tuple[Path, ...] = ()) -> None:
        size = estimate_bytes(outputs)
        if size > self.max_bytes:
            return  # would evict everything else and still not fit
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._entries[key] = CacheEntry(outputs, files, size)
        self.bytes += size
        while self.bytes > self.max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
