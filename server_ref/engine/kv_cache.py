"""Block bookkeeping for the paged KV cache (pure Python; the tensors live in the runner).

The cache is ``num_blocks`` blocks of ``block_size`` token slots. A sequence holds a block
table (list of block ids) covering every position it has computed or is about to compute.
"""

from __future__ import annotations


class OutOfBlocksError(RuntimeError):
    """No free block left; the scheduler preempts a sequence and retries."""


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))  # pop() gives 0, 1, ...
        self._tables: dict[str, list[int]] = {}

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self._free)

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def blocks_needed(self, seq_id: str, num_tokens: int) -> int:
        """Extra blocks ``seq_id`` needs so that its table covers ``num_tokens`` positions."""
        have = len(self._tables.get(seq_id, ()))
        need = -(-num_tokens // self.block_size)
        return max(0, need - have)

    def can_grow(self, seq_id: str, num_tokens: int) -> bool:
        return self.blocks_needed(seq_id, num_tokens) <= len(self._free)

    def grow(self, seq_id: str, num_tokens: int) -> list[int]:
        """Extend the block table of ``seq_id`` to cover ``num_tokens`` positions."""
        extra = self.blocks_needed(seq_id, num_tokens)
        if extra > len(self._free):
            raise OutOfBlocksError(f"need {extra} blocks, {len(self._free)} free")
        table = self._tables.setdefault(seq_id, [])
        for _ in range(extra):
            table.append(self._free.pop())
        return table

    def table(self, seq_id: str) -> list[int]:
        return self._tables.get(seq_id, [])

    def free(self, seq_id: str) -> None:
        """Return every block of ``seq_id`` (idempotent)."""
        for b in reversed(self._tables.pop(seq_id, [])):
            self._free.append(b)
