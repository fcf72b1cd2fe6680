"""Prefix caching in the block manager: reuse, reference counts, LRU eviction."""

from __future__ import annotations

from server_ref.engine.kv_cache import BlockManager


def toks(ids: list[int]):  # type: ignore[no-untyped-def]
    return lambda start, end: ids[start:end]


def run(bm: BlockManager, seq: str, ids: list[int]) -> int:
    """Admit ``seq``: match its prefix, allocate the rest, mark everything computed."""
    hit = bm.match_prefix(seq, len(ids), toks(ids))
    bm.grow(seq, len(ids))
    bm.commit(seq, len(ids), toks(ids))
    return hit


def test_a_shared_prefix_is_reused_and_one_token_is_always_left() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    system = list(range(100, 110))  # 10 tokens: 2 full blocks
    assert run(bm, "a", [*system, 1, 2, 3]) == 0
    assert run(bm, "b", [*system, 7, 8]) == 8  # both full system blocks, not the partial one
    assert bm.table("a")[:2] == bm.table("b")[:2]
    assert bm.table("a")[2] != bm.table("b")[2]
    # a prompt that is exactly the cached prefix still computes its last token
    assert bm.match_prefix("c", 8, toks(system[:8])) == 4


def test_shared_blocks_are_counted_once_and_kept_after_free() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    ids = list(range(12))
    run(bm, "a", ids)
    run(bm, "b", ids)  # reuses 2 blocks (11 usable tokens -> 2 full blocks)
    assert bm.num_used == 3 + 1
    bm.free("a")
    assert bm.num_used == 3  # b still holds the shared two and its own third
    bm.free("b")
    assert (bm.num_used, bm.num_free) == (0, 8)
    assert run(bm, "c", ids) == 8  # the freed prefix blocks were kept for reuse


def test_different_prefixes_do_not_match() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    run(bm, "a", [1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert bm.match_prefix("b", 9, toks([1, 2, 3, 4, 5, 6, 7, 0, 9])) == 4
    assert bm.match_prefix("c", 9, toks([0, 2, 3, 4, 5, 6, 7, 8, 9])) == 0


def test_cached_blocks_are_evicted_least_recently_used_first() -> None:
    bm = BlockManager(num_blocks=4, block_size=2)
    run(bm, "old", [1, 2, 3])  # caches block [1, 2]
    run(bm, "new", [5, 6, 7])  # caches block [5, 6]
    bm.free("old")
    bm.free("new")
    assert bm.num_free == 4
    bm.grow("big", 6)  # needs 3 blocks: 2 never used + the LRU cached one ([1, 2])
    assert bm.match_prefix("x", 3, toks([1, 2, 3])) == 0
    assert bm.match_prefix("y", 3, toks([5, 6, 7])) == 2


def test_commit_registers_only_full_computed_blocks() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    ids = list(range(10))
    bm.grow("a", 10)
    bm.commit("a", 6, toks(ids))  # one full block computed so far
    assert bm.match_prefix("b", 10, toks(ids)) == 4
    bm.commit("a", 10, toks(ids))
    assert bm.match_prefix("c", 10, toks(ids)) == 8


def test_blocks_after_a_partial_match_are_found_again() -> None:
    # a sequence that reuses a cached prefix and then diverges must register its own blocks
    # under hashes of *its* tokens, so that its next turn finds them
    bm = BlockManager(num_blocks=32, block_size=4)
    shared = list(range(100, 108))  # two full blocks
    run(bm, "a", [*shared, 1, 2, 3, 4, 5])
    b = [*shared, 7, 8, 9, 10, 11, 12, 13, 14, 15]  # 17 tokens: shares two blocks with a
    assert run(bm, "b", b) == 8
    bm.free("b")
    assert bm.match_prefix("b-next-turn", len(b) + 2, toks([*b, 40, 41])) == 16
