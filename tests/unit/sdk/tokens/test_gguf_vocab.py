"""sdk.tokens.tokenizer_from_gguf on tiny GGUF files written here (tokenizer metadata + one
tensor): the vocabulary, the encoder it builds, and every way a file can be unusable."""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import regex

gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

from sdk.tokens import (  # noqa: E402
    ChatTemplateError,
    ModelTokenizer,
    TokenizerError,
    tokenizer_from_gguf,
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


_GGUF_TYPES = {str: gguf.GGUFValueType.STRING, int: gguf.GGUFValueType.UINT32}


def write_gguf(path: Path, *, extra: dict[str, Any] | None = None, **overrides: Any) -> Path:
    """A GGUF with a byte-level BPE vocabulary; ``overrides`` replace or (None) drop keys;
    ``extra``: more keys, each written with the GGUF type of its Python value."""
    merges = overrides.pop("merges", MERGES)
    tokens, types = vocabulary(MERGES)
    meta: dict[str, Any] = {
        "model": "gpt2",
        "pre": "smollm",
        "merges": merges,
        "template": CHATML,
        "bos": 1,
        "eos": 2,
        "add_bos": False,
        "add_eos": None,
        "name": "tiny-vocab",
    } | overrides
    writer = gguf.GGUFWriter(path, "llama")
    if meta["name"] is not None:
        writer.add_name(meta["name"])
    writer.add_context_length(64)
    writer.add_tokenizer_model(meta["model"])
    if meta["pre"] is not None:
        writer.add_tokenizer_pre(meta["pre"])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if meta["merges"] is not None:
        writer.add_token_merges(meta["merges"])
    if meta["bos"] is not None:
        writer.add_bos_token_id(meta["bos"])
    writer.add_eos_token_id(meta["eos"])
    if meta["add_bos"] is not None:
        writer.add_add_bos_token(meta["add_bos"])
    if meta["add_eos"] is not None:
        writer.add_add_eos_token(meta["add_eos"])
    if meta["template"] is not None:
        writer.add_chat_template(meta["template"])
    for key, value in (extra or {}).items():
        writer.add_key_value(key, value, _GGUF_TYPES[type(value)])
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
def tok(request: pytest.FixtureRequest, tiny_gguf: Path) -> ModelTokenizer:
    source = tiny_gguf if request.param == "path" else gguf.GGUFReader(tiny_gguf)
    return tokenizer_from_gguf(source)


def token_id(tok: ModelTokenizer, text: str) -> int:
    return tok.mergeable_ranks[text.encode()]


def test_metadata(tok: ModelTokenizer) -> None:
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


def test_encode_applies_the_merges(tok: ModelTokenizer) -> None:
    assert tok.encode(" the hello") == [token_id(tok, " the"), token_id(tok, " hello")]
    # SmolLM's pre-tokenizer: the two spaces before a digit stay one piece, " 1" never forms
    assert tok.encode("a  1") == [ord("a") + 3, token_id(tok, "  "), ord("1") + 3]


def test_special_tokens(tok: ModelTokenizer) -> None:
    assert tok.encode("<|im_start|>he") == [1, token_id(tok, "he")]
    # past the missing byte 0x04, byte b has id b + 3
    assert tok.encode("<|im_end|>", allow_special=False) == [b + 3 for b in b"<|im_end|>"]
    # user-defined tokens are matched even when special parsing is off (as in llama.cpp)
    assert tok.encode("<tool>", allow_special=False) == [3]


def test_bytes_without_a_token_are_dropped_like_llama_cpp(tok: ModelTokenizer) -> None:
    assert tok.encode("a\x04b") == [ord("a") + 3, ord("b") + 3]


def test_decode(tok: ModelTokenizer) -> None:
    text = "<|im_start|>user\n the hello  1 中文 🎉<|im_end|>"
    ids = tok.encode(text)

    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode()
    assert b"".join(tok.token_bytes(i) for i in ids) == text.encode()
    assert tok.decode(tok.encode("🎉")[:1]) == "\ufffd"  # a partial character
    for bad in (10**6, tok.n_vocab, -1):  # tok.n_vocab: the placeholder for byte 0x04
        with pytest.raises(TokenizerError, match="not in the vocabulary"):
            tok.decode([bad])


def reference_encode(tok: ModelTokenizer, text: str) -> list[int]:
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


def test_encode_matches_a_merge_list_bpe_on_random_text(tok: ModelTokenizer) -> None:
    rng = random.Random(0)
    alphabet = ["t", "h", "e", "l", "o", " ", "  ", "1", "2", "x", "\n", "\x04", "é", "!"]
    for _ in range(300):
        text = "".join(rng.choices(alphabet, k=rng.randint(1, 16)))
        assert tok.encode(text) == reference_encode(tok, text), repr(text)


def test_apply_chat_template(tok: ModelTokenizer) -> None:
    prompt = tok.apply_chat_template([{"role": "user", "content": "hello"}])

    assert prompt == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    assert tok.encode(prompt)[:1] == [1]


def test_model_without_chat_template(tmp_path: Path) -> None:
    tok = tokenizer_from_gguf(write_gguf(tmp_path / "m.gguf", template=None))

    assert tok.chat_template is None
    with pytest.raises(ChatTemplateError, match="no chat template"):
        tok.apply_chat_template([{"role": "user", "content": "hi"}])


def test_missing_pre_tokenizer_means_llama_cpp_default(tmp_path: Path) -> None:
    tok = tokenizer_from_gguf(write_gguf(tmp_path / "m.gguf", pre=None))

    assert tok.pre_tokenizer == "default"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "llama"}, r"tokenizer model 'llama' \(SentencePiece\) is not supported"),
        ({"model": "bert"}, "tokenizer model 'bert' is not supported"),
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
        tokenizer_from_gguf(path)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_bytes(b"this is not a model" * 10)

    with pytest.raises(TokenizerError, match=r"^notes\.gguf is not a GGUF file \(it starts with"):
        tokenizer_from_gguf(path)
    with pytest.raises(FileNotFoundError):
        tokenizer_from_gguf(tmp_path / "absent.gguf")


def test_a_cut_file_is_truncated(tiny_gguf: Path, tmp_path: Path) -> None:
    data = tiny_gguf.read_bytes()
    tensor = gguf.GGUFReader(tiny_gguf).tensors[0]
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: int(tensor.data_offset) + 4])  # the tensor's last bytes are missing
    with pytest.raises(TokenizerError, match=r"^cut\.gguf is truncated or corrupt: ValueError"):
        tokenizer_from_gguf(cut)
    cut.write_bytes(data[:200])  # inside the metadata
    with pytest.raises(TokenizerError, match=r"^cut\.gguf is truncated or corrupt: \w+"):
        tokenizer_from_gguf(cut)


def test_corrupt_files_raise_only_tokenizer_errors(tiny_gguf: Path, tmp_path: Path) -> None:
    """Every cut of the header and random damage to it: a ``TokenizerError`` of one line, or
    (damage that happens to leave a readable vocabulary) a tokenizer."""
    data = tiny_gguf.read_bytes()
    header = data.index(b"tokenizer.ggml.tokens") + 200
    rng = random.Random(7)
    damaged = [data[:cut] for cut in range(4, header, 7)]
    for _ in range(300):
        copy = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            copy[rng.randrange(4, header)] = rng.randrange(256)
        damaged.append(bytes(copy))
    path = tmp_path / "damaged.gguf"
    outcomes = set()
    for blob in damaged:
        path.write_bytes(blob)
        try:
            tokenizer_from_gguf(path)
            outcomes.add("read")
        except TokenizerError as exc:
            assert "\n" not in str(exc) and str(exc), repr(exc)
            outcomes.add("refused")
    assert "refused" in outcomes


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tokenizer.ggml.pre", 7, "tokenizer.ggml.pre should be text, got 7"),
        ("tokenizer.ggml.bos_token_id", "one", "bos_token_id should be an integer"),
        ("tokenizer.ggml.add_bos_token", 1, "add_bos_token should be true or false"),
        ("tokenizer.ggml.bos_token_id", 10**6, "names token 1000000, beyond the vocabulary"),
    ],
)
def test_metadata_of_the_wrong_type(tmp_path: Path, key: str, value: Any, message: str) -> None:
    own = {"pre": "tokenizer.ggml.pre", "bos": "tokenizer.ggml.bos_token_id"}
    drop = {name: None for name, full in own.items() if full == key}
    drop |= {"add_bos": None} if key.endswith("add_bos_token") else {}
    path = write_gguf(tmp_path / "odd.gguf", extra={key: value}, **drop)
    with pytest.raises(TokenizerError, match=message):
        tokenizer_from_gguf(path)


def test_name_and_context_length(tiny_gguf: Path, tmp_path: Path) -> None:
    assert tokenizer_from_gguf(tiny_gguf).model == "tiny-vocab"
    assert tokenizer_from_gguf(tiny_gguf, model="mine").model == "mine"
    nameless = write_gguf(tmp_path / "nameless.gguf", name=None)
    assert tokenizer_from_gguf(nameless).model == "nameless"
    assert tokenizer_from_gguf(tiny_gguf, context_length=32).context_length == 32


def test_bos_and_eos_added_as_llama_cpp_adds_them(tmp_path: Path) -> None:
    tok = tokenizer_from_gguf(write_gguf(tmp_path / "bos.gguf", add_bos=True, add_eos=True))
    plain = tokenizer_from_gguf(write_gguf(tmp_path / "plain.gguf"))
    he = token_id(tok, "he")
    assert tok.encode("he") == [he]
    assert tok.prompt_ids("he") == [1, he, 2] and tok.count("he") == 3
    assert plain.prompt_ids("he") == [he] and plain.count("he") == 1
    # the template's leading BOS text and trailing EOS text are not counted twice
    chat = [{"role": "user", "content": "he"}, {"role": "assistant", "content": "he"}]
    rendered = plain.render_chat(chat, add_generation_prompt=False)
    assert rendered.startswith("<|im_start|>")
    assert plain.count_chat(chat) == len(plain.encode(plain.render_chat(chat)))
    assert tok.count_chat(chat) == plain.count_chat(chat) + 1  # only the EOS is new
    bos_only = tokenizer_from_gguf(write_gguf(tmp_path / "bos_only.gguf", add_bos=True))
    assert bos_only.count_chat(chat) == plain.count_chat(chat)


def test_exact_for_leaves_server_dependent_chats_to_the_server(tok: ModelTokenizer) -> None:
    weather = {"type": "function", "function": {"name": "weather", "parameters": {}}}
    user = {"role": "user", "content": "hi"}
    assert tok.exact and tok.source == "gguf"
    assert tok.exact_for() and tok.exact_for([user])
    assert tok.exact_for([user], tools=[weather], tool_choice="none")
    assert not tok.exact_for([user], tools=[weather])
    assert not tok.exact_for([user, {"role": "assistant", "content": "The answer is"}])
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    assert not tok.exact_for([user, {"role": "assistant", "tool_calls": [call]}, user])
    assert not tok.exact_for([user, {"role": "tool", "content": "sunny", "tool_call_id": "c1"}])


def test_without_the_gguf_package_the_error_names_the_extra(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)  # "import gguf" fails
    with pytest.raises(
        TokenizerError, match=r"needs the gguf package: pip install 'llm-sdk\[gguf\]'"
    ):
        tokenizer_from_gguf(tiny_gguf)
