"""KV-cached, chunked, batched decode must equal a cache-free full forward pass (fp32)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gguf import GGMLQuantizationType as Q
from kit.tinymodel import write_tiny_gguf

from server_ref.engine.kv_cache import BlockManager
from server_ref.engine.runner import ModelRunner
from server_ref.engine.scheduler import Scheduler
from server_ref.engine.sequence import Sequence
from server_ref.engine.step_plan import slots_of
from server_ref.engine.types import SamplingParams
from server_ref.loading.gguf import load_int4_weights, load_tensors, open_gguf, read_config
from server_ref.loading.llama_weights import build_model
from server_ref.models.attention_meta import AttnGroup, AttnPlan, KVCache
from server_ref.models.int4 import Int4Linear
from server_ref.models.llama import Llama

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module", params=DEVICES)
def model(tiny_gguf: Path, request: pytest.FixtureRequest) -> Llama:
    # fp32 on every device: the claim is exact equivalence of the cached path, not bf16 noise
    r = open_gguf(tiny_gguf)
    return build_model(read_config(r), load_tensors(r), torch.device(request.param), torch.float32)


def _step(
    sched: Scheduler, runner: ModelRunner, blocks: BlockManager
) -> list[tuple[Sequence, torch.Tensor]]:
    """One scheduled step through the runner: the sampling sequences and their logits."""
    batch = sched.schedule()
    logits = runner.execute(batch, [blocks.table(b.seq.request_id) for b in batch])
    for b in batch:
        b.seq.num_computed += b.num_new
    return list(zip([b.seq for b in batch if b.samples], logits, strict=True))


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
        for seq, row in _step(sched, runner, blocks):
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


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "decode-graphs"])
def test_a_lone_decode_attends_over_exactly_its_keys(
    model: Llama, graphs: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Llama.lone_decode (--int4 auto): a step decoding one sequence skips the padding of
    # batch invariance; its logits are still those of a full pass
    monkeypatch.setattr(model, "lone_decode", True)
    widths: list[int] = []
    planner = model.attention_plan

    def attention_plan(g: AttnGroup, cache: KVCache) -> AttnPlan:
        plan = planner(g, cache)
        widths.append(plan.width)
        return plan

    monkeypatch.setattr(model, "attention_plan", attention_plan)
    torch.manual_seed(3)
    blocks = BlockManager(num_blocks=16, block_size=4)
    sched = Scheduler(blocks, max_num_seqs=1, max_queue=1, max_batched_tokens=64)
    runner = ModelRunner(model, blocks.num_blocks, blocks.block_size, decode_graphs=graphs)
    prompt = torch.randint(0, 256, (13,)).tolist()
    seq = Sequence("s", prompt, SamplingParams(max_tokens=6), frozenset())
    sched.add(seq)
    for _ in range(6):
        ((_, row),) = _step(sched, runner, blocks)
        with torch.inference_mode():
            ids = torch.tensor([seq.prompt_ids + seq.output_ids], device=model.device)
            full = model.forward_full(ids)[0, -1]
        torch.testing.assert_close(row, full, atol=1e-4, rtol=0)
        seq.output_ids.append(int(row.argmax()))
    # the prefill's keys padded to 64, then each decode's exact count (16: in whole blocks)
    assert widths == [64, 14, 15, 16, 17, 18]


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


def _decode(
    model: Llama, prompts: list[list[int]], steps: int, watch: int, budget: int = 512
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run the prompts together (at most ``budget`` tokens a step, so long prompts are
    prefilled in chunks); return prompt ``watch``'s logits at each step and the keys and
    values its tokens left in the cache (all layers)."""
    blocks = BlockManager(num_blocks=128, block_size=4)
    sched = Scheduler(blocks, max_num_seqs=8, max_queue=8, max_batched_tokens=budget)
    runner = ModelRunner(model, blocks.num_blocks, blocks.block_size)
    seqs = [
        Sequence(f"s{i}", p, SamplingParams(max_tokens=steps), frozenset())
        for i, p in enumerate(prompts)
    ]
    for s in seqs:
        sched.add(s)
    got: list[torch.Tensor] = []
    while len(got) < steps:
        for seq, row in _step(sched, runner, blocks):
            if seq is seqs[watch]:
                got.append(row.clone())
            seq.output_ids.append(int(row.argmax()))
    n = seqs[watch].num_computed
    slots = slots_of(blocks.table(seqs[watch].request_id), 0, n, blocks.block_size)
    kv = torch.stack([runner.cache.k[:, :, slots], runner.cache.v[:, :, slots]])
    return got, kv


@pytest.fixture(scope="module")
def smollm_shaped_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the default model's geometry (576 wide, 9 query heads on 3 kv heads of 64, 1536-wide
    # MLP), where the kernels' batch dependence shows
    path = tmp_path_factory.mktemp("geom") / "geom.gguf"
    return write_tiny_gguf(
        path, dim=576, n_layers=2, n_heads=9, n_kv_heads=3, ffn=1536, quant_types=[Q.Q4_1]
    )


@pytest.mark.parametrize("matmuls", ["fp32", "bf16", "int4"])
@pytest.mark.parametrize("budget", [512, 24], ids=["whole-prefill", "chunked-prefill"])
def test_a_sequence_computes_the_same_numbers_batched_as_alone(
    smollm_shaped_gguf: Path, matmuls: str, budget: int
) -> None:
    # decoded next to others of other lengths, its prompt prefilled in other chunks, a
    # sequence gets bit for bit the logits and keys/values it gets alone. bf16 matmul inputs
    # would round any last-bit difference up into a 0.4% one and flip greedy near-ties.
    # int4: the file's 4-bit weights in every step (``--int4 always``)
    if matmuls == "int4" and torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("the int4 CPU kernel is vectorized for x86 AVX2 / AVX-512 only")
    r = open_gguf(smollm_shaped_gguf)
    mm = None if matmuls == "fp32" else torch.bfloat16
    model = build_model(
        read_config(r),
        load_tensors(r),
        torch.device("cpu"),
        torch.float32,
        matmul_dtype=mm,
        int4=load_int4_weights(r) if matmuls == "int4" else None,
    )
    assert sum(isinstance(m, Int4Linear) for m in model.modules()) == (
        4 * model.cfg.n_layers if matmuls == "int4" else 0
    )
    torch.manual_seed(2)
    prompts = [torch.randint(0, 256, (n,)).tolist() for n in (37, 100, 5, 130, 64)]
    alone, kv_alone = _decode(model, prompts[:1], 8, 0)
    together, kv_together = _decode(model, prompts, 8, 0, budget)
    assert torch.equal(kv_alone, kv_together)
    for a, b in zip(alone, together, strict=True):
        assert torch.equal(a, b)
