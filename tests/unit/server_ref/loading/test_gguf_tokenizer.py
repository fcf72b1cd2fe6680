"""loading.gguf_tokenizer on tiny GGUF files written here (tokenizer metadata + one tensor)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pytest
import regex

gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

from sdk.tokens import ChatTemplateError, TokenizerError  # noqa: E402
from server_ref.loading.gguf_tokenizer import (  # noqa: E402
    GGUFTokenizer,
    encoding_from_gguf,
    load_gguf_tokenizer,
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = [("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3), ("<tool>", 4)]
MISSING_BYTE = 0x04  # like SmolLM2, this vocabulary has no token for byte 0x04
MERGES = ["Ġ t", "h e", "Ġt he", "Ġ Ġ", "l l", "he ll", "hell o", "Ġ 1", "Ġ hello"]


def _byte_level_table() -> dict[int, str]:
    direct = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in direct}
    shifted = [b for b in range(256) if b not in table]
    table.update({b: chr(0x100 + n) for n, b in enumerate(shifted)})
    return table


BYTE_LEVEL = _byte_level_table()


def byte_level(data: bytes) -> str:
    """GPT-2's printable spelling of raw bytes (0x20 -> "Ġ")."""
    return "".join(BYTE_LEVEL[b] for b in data)


def vocabulary(merges: list[str]) -> tuple[list[str], list[int]]:
    tokens = [text for text, _ in SPECIALS]
    types = [kind for _, kind in SPECIALS]
    tokens += [byte_level(bytes([b])) for b in range(256) if b != MISSING_BYTE]
    tokens += [merge.replace(" ", "") for merge in merges]
    types += [1] * (len(tokens) - len(types))
    return tokens, types


def write_gguf(path: Path, **overrides: Any) -> Path:
    """A GGUF with a byte-level BPE vocabulary; ``overrides`` replace or (None) drop keys."""
    merges = overrides.pop("merges", MERGES)
    tokens, types = vocabulary(MERGES)
    meta: dict[str, Any] = {
        "model": "gpt2",
        "pre": "smollm",
        "merges": merges,
        "template": CHATML,
        "bos": 1,
        "eos": 2,
    } | overrides
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_context_length(64)
    writer.add_tokenizer_model(meta["model"])
    if meta["pre"] is not None:
        writer.add_tokenizer_pre(meta["pre"])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if meta["merges"] is not None:
        writer.add_token_merges(meta["merges"])
    writer.add_bos_token_id(meta["bos"])
    writer.add_eos_token_id(meta["eos"])
    writer.add_add_bos_token(False)
    if meta["template"] is not None:
        writer.add_chat_template(meta["template"])
    writer.add_tensor("tiny", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module", params=["path", "reader"])
def tok(request: pytest.FixtureRequest, tiny_gguf: Path) -> GGUFTokenizer:
    source = tiny_gguf if request.param == "path" else gguf.GGUFReader(tiny_gguf)
    return load_gguf_tokenizer(source)


def token_id(tok: GGUFTokenizer, text: str) -> int:
    return tok.mergeable_ranks[text.encode()]


def test_metadata(tok: GGUFTokenizer) -> None:
    tokens, _ = vocabulary(MERGES)
    assert tok.n_vocab == len(tokens)
    assert (tok.bos_token_id, tok.bos_token) == (1, "<|im_start|>")
    assert (tok.eos_token_id, tok.eos_token) == (2, "<|im_end|>")
    assert tok.add_bos is False
    assert tok.context_length == 64
    assert tok.chat_template == CHATML
    assert tok.pre_tokenizer == "smollm"
    assert tok.special_tokens == {text: i for i, (text, _) in enumerate(SPECIALS)}
    assert tok.user_defined_tokens == {"<tool>"}


def test_encode_applies_the_merges(tok: GGUFTokenizer) -> None:
    assert tok.encode(" the hello") == [token_id(tok, " the"), token_id(tok, " hello")]
    # SmolLM's pre-tokenizer: the two spaces before a digit stay one piece, " 1" never forms
    assert tok.encode("a  1") == [ord("a") + 3, token_id(tok, "  "), ord("1") + 3]


def test_special_tokens(tok: GGUFTokenizer) -> None:
    assert tok.encode("<|im_start|>he") == [1, token_id(tok, "he")]
    # past the missing byte 0x04, byte b has id b + 3
    assert tok.encode("<|im_end|>", allow_special=False) == [b + 3 for b in b"<|im_end|>"]
    # user-defined tokens are matched even when special parsing is off (as in llama.cpp)
    assert tok.encode("<tool>", allow_special=False) == [3]
    assert tok.encode("he", add_bos=True) == [1, token_id(tok, "he")]


def test_bytes_without_a_token_are_dropped_like_llama_cpp(tok: GGUFTokenizer) -> None:
    assert tok.encode("a\x04b") == [ord("a") + 3, ord("b") + 3]


def test_decode(tok: GGUFTokenizer) -> None:
    text = "<|im_start|>user\n the hello  1 中文 🎉<|im_end|>"
    ids = tok.encode(text)

    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode()
    assert b"".join(tok.token_bytes(i) for i in ids) == text.encode()
    assert tok.decode(tok.encode("🎉")[:1]) == "\ufffd"  # a partial character
    for bad in (10**6, tok.n_vocab, -1):  # tok.n_vocab: the placeholder for byte 0x04
        with pytest.raises(TokenizerError, match="not in the vocabulary"):
            tok.decode([bad])


def reference_encode(tok: GGUFTokenizer, text: str) -> list[int]:
    """llama.cpp's algorithm: pre-tokenize, then apply the lowest-index merge until none
    applies; symbols without a token are dropped."""
    merge_rank = {tuple(m.split(" ")): k for k, m in enumerate(MERGES)}  # byte-level spellings
    ids_of = {text: i for i, text in enumerate(vocabulary(MERGES)[0])}
    ids: list[int] = []
    for piece in regex.findall(tok.pattern, text):
        symbols = [byte_level(bytes([b])) for b in piece.encode()]
        while True:
            pairs = [
                (merge_rank[pair], i)
                for i, pair in enumerate(itertools.pairwise(symbols))
                if pair in merge_rank
            ]
            if not pairs:
                break
            _, i = min(pairs)
            symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
        ids += [ids_of[s] for s in symbols if s in ids_of]
    return ids


def test_encode_matches_a_merge_list_bpe_on_random_text(tok: GGUFTokenizer) -> None:
    rng = random.Random(0)
    alphabet = ["t", "h", "e", "l", "o", " ", "  ", "1", "2", "x", "\n", "\x04", "é", "!"]
    for _ in range(300):
        text = "".join(rng.choices(alphabet, k=rng.randint(1, 16)))
        assert tok.encode(text) == reference_encode(tok, text), repr(text)


def test_apply_chat_template(tok: GGUFTokenizer) -> None:
    prompt = tok.apply_chat_template([{"role": "user", "content": "hello"}])

    assert prompt == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    assert tok.encode(prompt)[:1] == [1]


def test_model_without_chat_template(tmp_path: Path) -> None:
    tok = load_gguf_tokenizer(write_gguf(tmp_path / "m.gguf", template=None))

    assert tok.chat_template is None
    with pytest.raises(ChatTemplateError, match="no chat template"):
        tok.apply_chat_template([{"role": "user", "content": "hi"}])


def test_encoding_from_gguf(tiny_gguf: Path) -> None:
    enc = encoding_from_gguf(tiny_gguf)

    assert enc.decode(enc.encode(" the hello")) == " the hello"


def test_missing_pre_tokenizer_means_llama_cpp_default(tmp_path: Path) -> None:
    tok = load_gguf_tokenizer(write_gguf(tmp_path / "m.gguf", pre=None))

    assert tok.pre_tokenizer == "default"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "llama"}, "tokenizer model 'llama' is not supported"),
        ({"pre": "klingon"}, "unknown pre-tokenizer 'klingon'"),
        ({"merges": None}, "no tokenizer.ggml.merges"),
        ({"merges": ["h e", "Ġ t"]}, "not in id order"),
        ({"merges": ["q z"]}, "does not produce a known token"),
    ],
)
def test_unusable_tokenizers_are_clear_errors(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    path = write_gguf(tmp_path / "bad.gguf", **overrides)

    with pytest.raises(TokenizerError, match=message):
        load_gguf_tokenizer(path)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_bytes(b"this is not a model" * 10)

    with pytest.raises(TokenizerError, match=r"notes\.gguf"):
        load_gguf_tokenizer(path)
    with pytest.raises(FileNotFoundError):
        load_gguf_tokenizer(tmp_path / "absent.gguf")
