"""What one forward step's attention reads besides the hidden states: the paged KV cache and
the description of which cache slots each new token writes and which keys it attends to.

The runner (``engine.runner``) builds a ``BatchMeta`` per step; ``Llama.forward`` builds one
``AttnPlan`` per ``AttnGroup`` from it and shares it across layers. Plain data, no model code.

Shape letters: N new tokens in the step (all sequences, flattened), M of them sampled, S
sequences in a group, Q queries per sequence, Lk or W key positions (padded), KV key/value
heads, D head size, R padded query rows of one kv head (heads per kv head * Q, rounded up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

# Key widths are padded to a multiple of KEY_WIDTH_MULTIPLE and query rows to a multiple of
# ROW_MULTIPLE, so attention sums every row the same way in any batch (``Attention.attend``).
KEY_WIDTH_MULTIPLE = 64
ROW_MULTIPLE = 4


def padded_rows(rows: int) -> int:
    """``rows`` rounded up to a multiple of ``ROW_MULTIPLE``."""
    return -(-rows // ROW_MULTIPLE) * ROW_MULTIPLE


@dataclass
class KVCache:
    """Paged key/value storage shared by all sequences.

    A sequence owns whole blocks (bookkeeping in ``engine.kv_cache``); slot ``b * block_size +
    i`` is position ``i`` of block ``b``. Heads outermost, so gathering a sequence's slots gives
    each kv head's keys contiguously, ready for batched matmuls without a transposing copy.
    ``Llama.new_cache`` allocates one for a model.
    """

    k: Tensor  # [n_layers, KV, num_blocks * block_size, D]
    v: Tensor  # [n_layers, KV, num_blocks * block_size, D]
    block_size: int
    # per layer, [slots, KV, D] views of k and v, where a step writes its new keys and values
    # (made once: a decode step at batch 1 costs more in such small ops than in attention)
    k_by_slot: tuple[Tensor, ...] = field(init=False, repr=False)
    v_by_slot: tuple[Tensor, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.k_by_slot = self.k.transpose(1, 2).unbind(0)
        self.v_by_slot = self.v.transpose(1, 2).unbind(0)


@dataclass
class AttnGroup:
    """Sequences whose new tokens attend together: ``n_seqs`` rows of ``q_len`` queries each.

    The runner pads the key width to a multiple of ``KEY_WIDTH_MULTIPLE`` (``Attention.attend``
    says why); padded key positions name any valid slot and are masked out.
    """

    rows: slice  # their tokens in the flat [N] batch (sequence-major)
    n_seqs: int  # S
    q_len: int  # Q
    key_slots: Tensor  # [S, Lk] cache slot of every key position, from position 0
    mask: Tensor  # [S, 1, Q, Lk] bool: True where a query may attend


@dataclass
class AttnPlan:
    """How one attention group gathers and masks its keys, shared by all layers of a step."""

    bias: Tensor  # the mask as 0 / -inf, broadcastable to [KV * S, R, W]
    rows: Tensor  # [KV * S * W / unit] rows of a layer's cache viewed [KV * units, unit * D]
    unit: int  # slots per gathered row: the block size, or 1
    keys: tuple[Tensor, ...]  # per layer, its keys viewed [KV * units, unit * D]
    values: tuple[Tensor, ...]  # per layer, its values viewed [KV * units, unit * D]
    width: int  # W, key positions gathered per sequence
    # query rows padded, widths padded and values summed in fixed slices, so that a row's
    # numbers do not depend on its batch (False: a lone decode, ``Llama.lone_decode``)
    invariant: bool = True


@dataclass
class BatchMeta:
    """Where one step's new tokens sit and what they attend to (tensors on the model's device)."""

    positions: Tensor  # [N] position of every new token
    slot_mapping: Tensor  # [N] cache slot its key/value is written to
    groups: list[AttnGroup]  # together they cover the N rows
    logits_rows: Tensor  # [M] rows whose next-token logits are wanted
