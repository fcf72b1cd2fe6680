"""Write tiny random-weight Llama GGUF files for tests (no download, a few hundred KB)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# a few BPE merges (in rank order) so tokenization is more than bytes; "Ġ" is GPT-2's space
MERGES = ["h e", "l l", "he ll", "Ġ t", "Ġt h"]

# weight tensors cycle through these so one small file exercises every quantizer gguf has
QUANT_TYPES = [Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.F16, Q.BF16, Q.F32, Q.TQ2_0, Q.MXFP4]


def _byte_level_tokens() -> list[str]:
    """The 256 single-byte tokens in GPT-2's printable byte-to-unicode mapping, by byte value."""
    keep = (
        list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0x100))
    )
    mapping, n = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + n)
            n += 1
    return [mapping[b] for b in range(256)]


def write_tiny_gguf(
    path: Path,
    *,
    dim: int = 256,
    n_layers: int = 2,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    ffn: int = 512,
    context_length: int = 512,
    tie: bool = False,
    quant_types: list[Q] | None = None,
    seed: int = 0,
    arch: str = "llama",
    tokenizer_model: str = "gpt2",
) -> Path:
    rng = np.random.default_rng(seed)
    merged = [m.replace(" ", "") for m in MERGES]
    tokens = _byte_level_tokens() + merged + SPECIALS
    types = [1] * (256 + len(merged)) + [3] * len(SPECIALS)  # 1 normal, 3 control
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny-test-llama")
    w.add_context_length(context_length)
    w.add_embedding_length(dim)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model(tokenizer_model)
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES)
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
    qtypes = iter((quant_types or QUANT_TYPES) * 1000)
    hd = dim // n_heads

    def add(name: str, shape: tuple[int, ...], quant: bool = True, scale: float = 0.05) -> None:
        data = (rng.standard_normal(shape) * scale).astype(np.float32)
        if len(shape) == 1:
            data = 1.0 + data  # norm weights near one
        q = next(qtypes) if quant else Q.F32
        raw = data if q == Q.F32 else gguf.quants.quantize(data, q)
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=q)

    add("token_embd.weight", (len(tokens), dim), scale=0.5)
    for i in range(n_layers):
        add(f"blk.{i}.attn_norm.weight", (dim,), quant=False)
        add(f"blk.{i}.attn_q.weight", (n_heads * hd, dim))
        add(f"blk.{i}.attn_k.weight", (n_kv_heads * hd, dim))
        add(f"blk.{i}.attn_v.weight", (n_kv_heads * hd, dim))
        add(f"blk.{i}.attn_output.weight", (dim, n_heads * hd))
        add(f"blk.{i}.ffn_norm.weight", (dim,), quant=False)
        add(f"blk.{i}.ffn_gate.weight", (ffn, dim))
        add(f"blk.{i}.ffn_up.weight", (ffn, dim))
        add(f"blk.{i}.ffn_down.weight", (dim, ffn))
    add("output_norm.weight", (dim,), quant=False)
    if not tie:
        add("output.weight", (len(tokens), dim))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
