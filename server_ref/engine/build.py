"""Building an engine from a model file: open the GGUF, pick device and precision, size the KV
cache, resolve the end-of-generation tokens, and wire model, runner, scheduler and tokenizer.

The engine loop itself (``engine.LLMEngine``) knows nothing of files; this module is the one
place the engine package reaches into ``loading``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from sdk.tokens.gguf_vocab import tokenizer_from_gguf
from server_ref.engine.constraints import GrammarCompiler
from server_ref.engine.device import int4_max_rows, pick_device
from server_ref.engine.engine import EngineTokenizer, LLMEngine
from server_ref.engine.kv_cache import BlockManager
from server_ref.engine.runner import ModelRunner
from server_ref.engine.scheduler import Scheduler
from server_ref.engine.types import ModelInfo
from server_ref.loading import registry
from server_ref.loading.gguf import load_int4_weights, load_tensors, open_gguf, read_config
from server_ref.loading.llama_weights import build_model
from server_ref.models.int4 import Int4Linear
from server_ref.models.llama import ModelConfig

# End-of-generation tokens llama.cpp also treats as EOG when a vocabulary has them.
_EOG_NAMES = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>")


@dataclass(frozen=True)
class EngineConfig:
    device: str = "auto"
    dtype: str = "auto"  # auto | float32 | bfloat16 | mixed (device.pick_device)
    int4: str = "never"  # auto | always | never (device.int4_max_rows)
    max_num_seqs: int = 32
    max_queue: int = 256
    max_batched_tokens: int = 512  # per step; also the prefill chunk size
    block_size: int = 8
    kv_cache_mib: int | None = None  # default: 512 MiB on CPU, 8 GiB on CUDA
    max_model_len: int | None = None  # default: the model's context length, capped by the cache
    # replay captured graphs for decode steps on CUDA; off by default until it has been run on
    # a GPU (it is tested here only through its eager, padded twin)
    cuda_graphs: bool = False


def build_engine(path: str, config: EngineConfig | None = None, model_id: str = "") -> LLMEngine:
    """Load a GGUF file and build the whole engine.

    >>> engine = build_engine("model.gguf", EngineConfig(device="cpu"))  # doctest: +SKIP
    """
    config = config or EngineConfig()
    device, dtype, matmul_dtype = pick_device(config.device, config.dtype)
    int4_rows = int4_max_rows(config.int4, dtype, matmul_dtype)
    reader = open_gguf(path)
    cfg = read_config(reader)
    tokenizer = tokenizer_from_gguf(reader)
    num_blocks, max_len = _size_kv_cache(cfg, config, device, dtype)
    model = build_model(
        cfg,
        load_tensors(reader),
        device,
        dtype,
        max_positions=max_len,
        matmul_dtype=matmul_dtype,
        int4=load_int4_weights(reader) if int4_rows != 0 else None,
        int4_max_rows=int4_rows,
    )
    info = ModelInfo(
        id=model_id or cfg.name,
        context_length=max_len,
        eos_token_ids=_end_of_generation_ids(tokenizer),
        created=int(time.time()),
        extra={
            "device": str(device),
            "dtype": str(dtype).removeprefix("torch."),
            "matmul_dtype": str(model.matmul_dtype).removeprefix("torch."),
            "int4_layers": sum(isinstance(m, Int4Linear) for m in model.modules()),
        },
        vocab_size=cfg.vocab_size,
    )
    scheduler = Scheduler(
        BlockManager(num_blocks, config.block_size),
        max_num_seqs=config.max_num_seqs,
        max_queue=config.max_queue,
        max_batched_tokens=config.max_batched_tokens,
    )
    runner = ModelRunner(
        model,
        num_blocks,
        config.block_size,
        decode_graphs=device.type == "cuda" and config.cuda_graphs,
        max_batch=config.max_num_seqs,
    )
    compiler = GrammarCompiler.from_tokenizer(
        tokenizer, vocab_size=cfg.vocab_size, eos_token_ids=info.eos_token_ids
    )
    return LLMEngine(runner, tokenizer, scheduler, info, compiler)


def load_engine(
    model: str, config: EngineConfig, *, progress: registry.Progress | None = None
) -> LLMEngine:
    """``build_engine`` for a known model name (pulled into the cache on first use) or a path
    to a ``.gguf`` file. A known name is the model's id; a file's id is its stem.

    >>> engine = load_engine("smollm2-135m-instruct", EngineConfig())  # doctest: +SKIP
    """
    path = registry.resolve_model(model, progress=progress)
    model_id = model if model in registry.MODELS else path.stem
    return build_engine(str(path), config, model_id=model_id)


def _size_kv_cache(
    cfg: ModelConfig, config: EngineConfig, device: torch.device, dtype: torch.dtype
) -> tuple[int, int]:
    """``(KV cache blocks, max model length)`` for the memory budget of ``config``."""
    mib = config.kv_cache_mib or (512 if device.type == "cpu" else 8192)
    per_token = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * dtype.itemsize
    num_blocks = max(1, (mib << 20) // (per_token * config.block_size))
    capacity = num_blocks * config.block_size
    max_len = min(config.max_model_len or cfg.context_length, cfg.context_length, capacity)
    return num_blocks, max_len


def _end_of_generation_ids(tokenizer: EngineTokenizer) -> tuple[int, ...]:
    eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eos |= {tokenizer.special_tokens[n] for n in _EOG_NAMES if n in tokenizer.special_tokens}
    return tuple(sorted(eos))
