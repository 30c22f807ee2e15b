"""The last few results of an expensive conversion, kept for the rest of the process.

A tuned build converts the same source many times (every candidate, every validation fold,
every precision plan): onnx2tf and coremltools' converter take most of each build's time
(ppocr_cls to Core ML: 20.6 s onnx2tf and 11.1 s coremltools of a 46 s build). Keys say
everything the result depends on; values are shared, so callers treat them as read-only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class RecentResults:
    """At most ``size`` results by key, the least recently used dropped first."""

    def __init__(self, size: int = 2) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any | None:
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: Hashable, value: Any) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
