"""BlockManager: block tables grow on demand, free is idempotent, running out is an error."""

from __future__ import annotations

import pytest

from server_ref.engine.kv_cache import BlockManager, OutOfBlocksError


def test_capacity_and_counts_of_a_fresh_manager() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    assert bm.capacity_tokens == 32
    assert (bm.num_free, bm.num_used) == (8, 0)
    assert bm.table("nobody") == []


@pytest.mark.parametrize(("num_blocks", "block_size"), [(0, 4), (4, 0), (-1, 4), (4, -2)])
def test_non_positive_sizes_are_rejected(num_blocks: int, block_size: int) -> None:
    with pytest.raises(ValueError):
        BlockManager(num_blocks, block_size)


@pytest.mark.parametrize(
    ("tokens", "blocks"), [(0, 0), (1, 1), (3, 1), (4, 1), (5, 2), (8, 2), (9, 3)]
)
def test_blocks_needed_rounds_up_to_whole_blocks(tokens: int, blocks: int) -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    assert bm.blocks_needed("a", tokens) == blocks


def test_blocks_needed_counts_only_blocks_not_yet_held() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    bm.grow("a", 5)  # two blocks
    assert bm.blocks_needed("a", 3) == 0  # never negative
    assert bm.blocks_needed("a", 8) == 0
    assert bm.blocks_needed("a", 9) == 1
    assert bm.blocks_needed("b", 9) == 3  # other sequences are unaffected


def test_grow_extends_the_table_one_block_at_a_time() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    assert bm.grow("a", 1) == [0]
    for n in range(2, 5):  # positions 1..3 stay in the first block
        assert bm.grow("a", n) == [0]
    assert bm.grow("a", 5) == [0, 1]
    assert bm.grow("b", 9) == [2, 3, 4]
    assert bm.table("a") == [0, 1]
    assert (bm.num_free, bm.num_used) == (3, 5)


def test_grow_to_a_smaller_size_never_shrinks() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    bm.grow("a", 12)
    assert bm.grow("a", 1) == [0, 1, 2]
    assert bm.num_used == 3


def test_free_returns_every_block_and_is_idempotent() -> None:
    bm = BlockManager(num_blocks=4, block_size=2)
    bm.grow("a", 4)
    bm.grow("b", 3)
    bm.free("a")
    assert (bm.num_free, bm.table("a")) == (2, [])
    bm.free("a")
    bm.free("never-seen")
    assert bm.num_free == 2
    assert bm.table("b") == [2, 3]
    bm.free("b")
    assert (bm.num_free, bm.num_used) == (4, 0)


def test_freed_blocks_are_reused() -> None:
    bm = BlockManager(num_blocks=4, block_size=2)
    bm.grow("a", 8)
    bm.free("a")
    assert sorted(bm.grow("b", 8)) == [0, 1, 2, 3]
    assert bm.num_free == 0


def test_out_of_blocks_raises_and_leaves_state_untouched() -> None:
    bm = BlockManager(num_blocks=3, block_size=4)
    bm.grow("a", 8)
    assert bm.can_grow("b", 4)
    assert not bm.can_grow("b", 5)
    with pytest.raises(OutOfBlocksError):
        bm.grow("b", 5)
    assert bm.table("b") == []
    assert bm.num_free == 1
    with pytest.raises(OutOfBlocksError):
        bm.grow("a", 13)  # needs two more, one is free
    assert bm.table("a") == [0, 1]
    assert bm.grow("a", 12) == [0, 1, 2]  # exactly the last block still works


def test_whole_cache_can_be_held_by_one_sequence() -> None:
    bm = BlockManager(num_blocks=5, block_size=3)
    assert bm.can_grow("a", bm.capacity_tokens)
    assert not bm.can_grow("a", bm.capacity_tokens + 1)
    assert len(bm.grow("a", bm.capacity_tokens)) == 5
    assert bm.num_free == 0
    assert bm.can_grow("a", bm.capacity_tokens)  # already covered: needs nothing
    assert not bm.can_grow("b", 1)


def test_out_of_blocks_is_a_runtime_error() -> None:
    assert issubclass(OutOfBlocksError, RuntimeError)
