"""``/debug/memory``: where live memory was allocated, when the daemon traces it."""

from __future__ import annotations

import tracemalloc

from federationd.daemon import _memory_top


def test_without_tracing_it_says_how_to_turn_it_on() -> None:
    assert not tracemalloc.is_tracing()
    out = _memory_top()
    assert out["tracing"] is False and "PYTHONTRACEMALLOC" in out["hint"]


def test_with_tracing_the_largest_allocation_site_comes_first() -> None:
    tracemalloc.start()
    try:
        held = [bytes(1024) for _ in range(2000)]  # ~2 MB from this line
        out = _memory_top(limit=5)
    finally:
        tracemalloc.stop()
    assert out["tracing"] is True and out["traced_bytes"] >= 2_000_000
    top = out["by_line"][0]
    assert top["at"].endswith(f"test_memory_debug.py:{test_with_tracing_the_largest_allocation_site_comes_first.__code__.co_firstlineno + 3}")
    assert top["bytes"] >= 2_000_000 and top["blocks"] >= 2000
    assert out["by_file"][0]["file"].endswith("test_memory_debug.py")
    assert len(held) == 2000
