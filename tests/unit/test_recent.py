"""RecentResults: the last few conversions kept, the least recently used dropped first."""

from __future__ import annotations

from edgepack.convert.recent import RecentResults


def test_the_least_recently_used_result_goes_first() -> None:
    recent = RecentResults(size=2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # now the most recent
    recent.put("c", 3)
    assert recent.get("b") is None
    assert (recent.get("a"), recent.get("c")) == (1, 3)
    recent.put("a", 4)  # a new value for a key replaces the old
    assert recent.get("a") == 4
