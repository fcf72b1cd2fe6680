"""KV-cached, chunked, batched decode must equal a cache-free full forward pass (fp32)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from server_ref.engine.kv_cache import BlockManager
from server_ref.engine.runner import ModelRunner
from server_ref.engine.scheduler import Scheduler
from server_ref.engine.sequence import Sequence
from server_ref.engine.types import SamplingParams
from server_ref.loading.gguf import load_tensors, open_gguf, read_config
from server_ref.models.llama import Llama, build_model

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module", params=DEVICES)
def model(tiny_gguf: Path, request: pytest.FixtureRequest) -> Llama:
    # fp32 on every device: the claim is exact equivalence of the cached path, not bf16 noise
    r = open_gguf(tiny_gguf)
    return build_model(read_config(r), load_tensors(r), torch.device(request.param), torch.float32)


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "decode-graphs"])
@pytest.mark.parametrize("chunk", [512, 7])  # whole-prompt prefill and chunked prefill
def test_cached_batched_decode_matches_full_forward(model: Llama, chunk: int, graphs: bool) -> None:
    # decode-graphs: decode steps padded to a bucket (captured CUDA graphs on a GPU, eager here)
    torch.manual_seed(0)
    prompts = [torch.randint(0, 256, (n,)).tolist() for n in (13, 5, 21)]
    blocks = BlockManager(num_blocks=16, block_size=4)
    sched = Scheduler(blocks, max_num_seqs=8, max_queue=8, max_batched_tokens=chunk)
    runner = ModelRunner(model, blocks.num_blocks, blocks.block_size, decode_graphs=graphs)
    seqs = [
        Sequence(f"s{i}", p, SamplingParams(max_tokens=6), frozenset())
        for i, p in enumerate(prompts)
    ]
    for s in seqs:
        sched.add(s)
    steps = 0
    while any(len(s.output_ids) < 6 for s in seqs):
        batch = sched.schedule()
        logits = runner.execute(batch, [blocks.table(b.seq.request_id) for b in batch])
        sampling = [b.seq for b in batch if b.samples]
        for b in batch:
            b.seq.num_computed += b.num_new
        for row, seq in zip(logits, sampling, strict=True):
            ids = seq.prompt_ids + seq.output_ids
            with torch.inference_mode():
                full = model.forward_full(torch.tensor([ids], device=model.device))[0, -1]
            torch.testing.assert_close(row, full, atol=1e-4, rtol=0)
            seq.output_ids.append(int(row.argmax()))
            if len(seq.output_ids) == 6:
                sched.finish(seq)
        steps += 1
    assert blocks.num_used == 0
    if graphs:  # all-decode steps really went through padded buckets (3 rows pad to 4)
        assert runner.graphs is not None and runner.graphs._buckets
        assert chunk != 512 or (4, 64) in runner.graphs._buckets
    if chunk == 7:
        assert steps > 6  # the 21-token prompt really was prefilled in several chunks


def test_reused_prefix_blocks_give_the_same_logits(model: Llama) -> None:
    # the second prompt starts with the first one's 12 tokens: its first 3 blocks come from the
    # prefix cache, computed in another batch, and must give the logits of a full pass
    torch.manual_seed(1)
    shared = torch.randint(0, 256, (12,)).tolist()
    blocks = BlockManager(num_blocks=16, block_size=4)
    sched = Scheduler(blocks, max_num_seqs=4, max_queue=4, max_batched_tokens=64)
    runner = ModelRunner(model, blocks.num_blocks, blocks.block_size)
    hits = []
    for i, tail in enumerate(([1, 2, 3], [9, 8, 7, 6, 5])):
        seq = Sequence(f"s{i}", shared + tail, SamplingParams(max_tokens=3), frozenset())
        sched.add(seq)
        while len(seq.output_ids) < 3:
            batch = sched.schedule()
            if len(hits) == i:  # first step of this sequence: how much came from the cache
                hits.append(seq.num_computed)
            logits = runner.execute(batch, [blocks.table(b.seq.request_id) for b in batch])
            for b in batch:
                b.seq.num_computed += b.num_new
                blocks.commit(b.seq.request_id, b.seq.num_computed, b.seq.tokens_between)
            ids = seq.prompt_ids + seq.output_ids
            with torch.inference_mode():
                full = model.forward_full(torch.tensor([ids], device=model.device))[0, -1]
            torch.testing.assert_close(logits[0], full, atol=1e-4, rtol=0)
            seq.output_ids.append(int(logits[0].argmax()))
        sched.finish(seq)
    assert hits == [0, 12]  # the second sequence started with the shared 12 tokens cached
    assert blocks.num_used == 0
