"""The model runner: the only place that touches the device.

It owns the model and the KV cache tensors, turns a scheduled batch into flat token ids plus
``BatchMeta`` (cache slots, attention groups, masks) and returns next-token logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from server_ref.engine.cuda_graphs import DecodeGraphs
from server_ref.engine.scheduler import ScheduledSeq
from server_ref.engine.types import DTYPE_CHOICES
from server_ref.models.attention_meta import KEY_WIDTH_MULTIPLE, AttnGroup, BatchMeta
from server_ref.models.llama import Llama
from server_ref.models.prepack import has_native_bf16

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def pick_device(
    name: str = "auto", dtype: str = "auto"
) -> tuple[torch.device, torch.dtype, torch.dtype]:
    """``(device, model dtype, matmul dtype)`` for a ``--device`` and a ``--dtype``.

    Device ``auto``: CUDA when present, else CPU. Dtype ``auto``: bf16 on CUDA; on CPU
    ``mixed`` where the CPU has native bf16 matmuls (AVX512-BF16, AMX), else fp32 (emulated
    bf16 would be slower than fp32).
    ``mixed`` (CPU only) is an fp32 model whose block matmuls take bf16 weights and inputs
    (``models.prepack``): on the default model it keeps llama.cpp's top-1 agreement (97.2%
    against 96.9% for fp32) and answers "Paris", where full bf16 flips that near-tie (a
    0.35-logit margin) because its residual stream, attention and KV cache are bf16 too. It
    streams 326 MB of weights a decode step instead of 538. Rounding matmul inputs to bf16
    would turn any last-bit difference between a batched and a solo step into a 0.4% one;
    the runner and model are batch-invariant to the bit (``Attention.attend``,
    ``PackedLinear``), so greedy streams are the same batched as alone.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but no CUDA device is available")
        device = torch.device("cuda")
    elif name == "cpu":
        device = torch.device("cpu")
    else:
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "mixed" if has_native_bf16() else "float32"
    if dtype == "mixed":
        if device.type != "cpu":
            raise ValueError("--dtype mixed is a CPU mode; on CUDA use bfloat16")
        return device, torch.float32, torch.bfloat16
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use {', '.join(DTYPE_CHOICES)}")
    return device, _DTYPES[dtype], _DTYPES[dtype]


def _padded(width: int) -> int:
    """Key widths are padded for batch invariance (``Attention.attend``)."""
    return -(-width // KEY_WIDTH_MULTIPLE) * KEY_WIDTH_MULTIPLE


class ModelRunner:
    """Owns the model and its KV cache.

    ``decode_graphs``: run pure-decode steps through ``DecodeGraphs`` (captured CUDA graphs on
    a GPU; the same padded path eagerly on CPU, for tests).
    """

    def __init__(
        self,
        model: Llama,
        num_blocks: int,
        block_size: int,
        *,
        decode_graphs: bool = False,
        max_batch: int = 256,
    ) -> None:
        self.model = model
        self.device = model.device
        # one block more than the scheduler hands out: its first slot is the padding rows' trash
        self.cache = model.new_cache(num_blocks + 1, block_size)
        self.block_size = block_size
        self.graphs = (
            DecodeGraphs(
                model,
                self.cache,
                trash_slot=num_blocks * block_size,
                max_batch=max_batch,
                capture=self.device.type == "cuda",
            )
            if decode_graphs
            else None
        )

    def _slots(self, table: list[int], start: int, end: int) -> Tensor:
        pos = torch.arange(start, end)
        bt = torch.tensor(table, dtype=torch.long)
        return bt[pos // self.block_size] * self.block_size + pos % self.block_size

    @torch.inference_mode()
    def execute(self, batch: list[ScheduledSeq], tables: list[list[int]]) -> Tensor:
        """Run one step; return fp32 logits [M, vocab] for the entries that sample, in order."""
        if self.graphs is not None and all(s.num_new == 1 for s in batch):
            widths = [s.seq.num_computed + 1 for s in batch]
            if self.graphs.supports(len(batch), max(widths)):
                return self._decode_with_graphs(batch, tables, widths)
        # decodes (one new token) first, as one attention group; each longer chunk on its own
        order = sorted(range(len(batch)), key=lambda i: batch[i].num_new != 1)
        tokens: list[int] = []
        positions: list[Tensor] = []
        slot_maps: list[Tensor] = []
        groups: list[AttnGroup] = []
        logits_rows: list[int] = []
        ones = [i for i in order if batch[i].num_new == 1]
        row = 0
        if ones:
            lens = [batch[i].seq.num_computed + 1 for i in ones]
            width = _padded(max(lens))
            key_slots = torch.zeros(len(ones), width, dtype=torch.long)
            for j, i in enumerate(ones):
                key_slots[j, : lens[j]] = self._slots(tables[i], 0, lens[j])
            mask = torch.arange(width)[None, :] < torch.tensor(lens)[:, None]  # [S, Lk]
            groups.append(
                AttnGroup(slice(0, len(ones)), len(ones), 1, key_slots, mask[:, None, None, :])
            )
        for i in order:
            s = batch[i]
            start, end = s.seq.num_computed, s.seq.num_computed + s.num_new
            tokens += s.seq.tokens_between(start, end)
            positions.append(torch.arange(start, end))
            all_slots = self._slots(tables[i], 0, end)
            slot_maps.append(all_slots[start:end])
            if s.num_new != 1:
                width = _padded(end)
                keys = torch.zeros(1, width, dtype=torch.long)
                keys[0, :end] = all_slots
                q = torch.arange(start, end)[:, None]
                k = torch.arange(width)[None, :]
                mask = (k <= q)[None, None]  # [1, 1, Q, Lk]: causal, so the padding is masked
                groups.append(AttnGroup(slice(row, row + s.num_new), 1, s.num_new, keys, mask))
            row += s.num_new
            if s.samples:
                logits_rows.append(row - 1)
        dev = self.device
        meta = BatchMeta(
            positions=torch.cat(positions).to(dev),
            slot_mapping=torch.cat(slot_maps).to(dev),
            groups=[
                AttnGroup(g.rows, g.n_seqs, g.q_len, g.key_slots.to(dev), g.mask.to(dev))
                for g in groups
            ],
            logits_rows=torch.tensor(logits_rows, dtype=torch.long, device=dev),
        )
        logits = self.model(torch.tensor(tokens, device=dev), self.cache, meta)
        # logits come back in `order`; re-sort the sampling entries to the batch's own order
        sampling_in_order = [i for i in order if batch[i].samples]
        back = sorted(range(len(sampling_in_order)), key=lambda j: sampling_in_order[j])
        out: Tensor = logits[back]
        return out

    def _decode_with_graphs(
        self, batch: list[ScheduledSeq], tables: list[list[int]], widths: list[int]
    ) -> Tensor:
        assert self.graphs is not None
        keys = [self._slots(t, 0, w) for t, w in zip(tables, widths, strict=True)]
        logits = self.graphs.run(
            tokens=[s.seq.token_at(s.seq.num_computed) for s in batch],
            positions=[w - 1 for w in widths],
            slots=[int(k[-1]) for k in keys],
            key_slots=keys,
        )
        rows = [i for i, s in enumerate(batch) if s.samples]
        out: Tensor = logits[rows] if len(rows) != len(batch) else logits
        return out
