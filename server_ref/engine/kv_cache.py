"""Block bookkeeping for the paged KV cache (pure Python; the tensors live in the runner).

The cache is ``num_blocks`` blocks of ``block_size`` token slots. A sequence holds a block
table (list of block ids) covering every position it has computed or is about to compute.

Prefix caching (as vLLM's automatic prefix caching): once a block is full of computed tokens,
it is registered under a hash of *all* token ids from the sequence start to its end, so that
a later sequence with the same prefix (a shared system prompt, a chat's earlier turns) reuses
those keys/values instead of recomputing them. Shared blocks are reference-counted and never
written again (a sequence only writes past its matched prefix). A block nobody uses keeps its
contents and its hash, on an LRU list, until its space is needed.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

Tokens = Callable[[int, int], Sequence[int]]  # tokens(start, end): a sequence's token ids


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
        self._refs: dict[int, int] = {}  # block -> number of tables holding it
        self._by_hash: dict[bytes, int] = {}  # prefix hash -> block holding that prefix's end
        self._hash_of: dict[int, bytes] = {}  # block -> its prefix hash
        self._cached: OrderedDict[int, None] = OrderedDict()  # unused hashed blocks, LRU first
        self._hashed: dict[str, tuple[int, bytes]] = {}  # seq -> (full blocks hashed, last hash)

    @property
    def num_free(self) -> int:
        """Blocks a sequence can take: never used, or only kept for prefix reuse."""
        return len(self._free) + len(self._cached)

    @property
    def num_used(self) -> int:
        return self.num_blocks - self.num_free

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def blocks_needed(self, seq_id: str, num_tokens: int) -> int:
        """Extra blocks ``seq_id`` needs so that its table covers ``num_tokens`` positions."""
        have = len(self._tables.get(seq_id, ()))
        need = -(-num_tokens // self.block_size)
        return max(0, need - have)

    def can_grow(self, seq_id: str, num_tokens: int) -> bool:
        return self.blocks_needed(seq_id, num_tokens) <= self.num_free

    def grow(self, seq_id: str, num_tokens: int) -> list[int]:
        """Extend the block table of ``seq_id`` to cover ``num_tokens`` positions."""
        extra = self.blocks_needed(seq_id, num_tokens)
        if extra > self.num_free:
            raise OutOfBlocksError(f"need {extra} blocks, {self.num_free} free")
        table = self._tables.setdefault(seq_id, [])
        for _ in range(extra):
            block = self._take()
            self._refs[block] = 1
            table.append(block)
        return table

    def match_prefix(self, seq_id: str, num_tokens: int, tokens: Tokens) -> int:
        """Give a new sequence the cached blocks of its longest known prefix.

        Returns how many tokens are covered. At least one token is always left to compute, so
        the last position's logits exist. Call before the sequence has any block.
        """
        assert seq_id not in self._tables, "match_prefix is for a sequence without blocks"
        table: list[int] = []
        h = b""
        bs = self.block_size
        for i in range((num_tokens - 1) // bs):
            candidate = _chain(h, tokens(i * bs, (i + 1) * bs))
            block = self._by_hash.get(candidate)
            if block is None:
                break  # h stays the hash of the last matched block: commit() chains from it
            h = candidate
            if block in self._cached:
                del self._cached[block]
            self._refs[block] = self._refs.get(block, 0) + 1
            table.append(block)
        if table:
            self._tables[seq_id] = table
            self._hashed[seq_id] = (len(table), h)
        return len(table) * self.block_size

    def commit(self, seq_id: str, num_computed: int, tokens: Tokens) -> None:
        """Register the blocks of ``seq_id`` that are now full of computed tokens."""
        table = self._tables.get(seq_id)
        if table is None:
            return
        done, h = self._hashed.get(seq_id, (0, b""))
        full = min(num_computed // self.block_size, len(table))
        bs = self.block_size
        for i in range(done, full):
            h = _chain(h, tokens(i * bs, (i + 1) * bs))
            block = table[i]
            if h not in self._by_hash and block not in self._hash_of:
                self._by_hash[h] = block
                self._hash_of[block] = h
        if full > done:
            self._hashed[seq_id] = (full, h)

    def table(self, seq_id: str) -> list[int]:
        return self._tables.get(seq_id, [])

    def free(self, seq_id: str) -> None:
        """Release every block of ``seq_id`` (idempotent); hashed ones stay reusable."""
        self._hashed.pop(seq_id, None)
        for block in reversed(self._tables.pop(seq_id, [])):
            self._refs[block] -= 1
            if self._refs[block] == 0:
                del self._refs[block]
                if block in self._hash_of:
                    self._cached[block] = None  # most recently used last
                else:
                    self._free.append(block)

    def _take(self) -> int:
        if self._free:
            return self._free.pop()
        block, _ = self._cached.popitem(last=False)  # evict the least recently used prefix
        del self._by_hash[self._hash_of.pop(block)]
        return block


def _chain(prev: bytes, block_tokens: Sequence[int]) -> bytes:
    """Hash of a prefix: the previous blocks' hash and this block's token ids.

    A cryptographic hash, as vLLM moved to: with Python's ``hash`` a crafted prompt could
    collide with another user's prefix and read its cached keys/values.
    """
    data = prev + b"".join(t.to_bytes(4, "little") for t in block_tokens)
    return hashlib.blake2b(data, digest_size=16).digest()
