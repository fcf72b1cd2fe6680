"""Grammar constraints on the real default model's vocabulary (49152 tokens, two EOG ids)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kit.grammar_walk import SCHEMAS, Walker, validate

from sdk.tokens import (
    ModelTokenizer,
    active_tools,
    parse_tool_reply,
    tokenizer_from_gguf,
    tool_reply_schema,
)
from server_ref.engine.constraints import ConstraintError, ConstraintSpec, GrammarCompiler
from server_ref.engine.sampler import unpack_bitmask

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tok(default_gguf: Path) -> ModelTokenizer:
    return tokenizer_from_gguf(default_gguf)


@pytest.fixture(scope="module")
def eos(tok: ModelTokenizer) -> list[int]:
    # what the engine stops on for this model: <|im_end|> (the EOS) and <|endoftext|>
    return [tok.special_tokens["<|im_end|>"], tok.special_tokens["<|endoftext|>"]]


@pytest.fixture(scope="module")
def walker(tok: ModelTokenizer, eos: list[int]) -> Walker:
    assert tok.n_vocab == 49152
    compiler = GrammarCompiler.from_tokenizer(tok, vocab_size=tok.n_vocab, eos_token_ids=eos)
    return Walker(compiler, [tok.token_bytes(i) for i in range(tok.n_vocab)], eos)


@pytest.mark.parametrize("name", [*sorted(SCHEMAS), "json_object"])
def test_walks_give_schema_valid_json(name: str, tok: ModelTokenizer, walker: Walker) -> None:
    schema = SCHEMAS.get(name)
    spec = ConstraintSpec.json_object() if schema is None else ConstraintSpec.json_schema(schema)
    for seed, free in enumerate([0, 25, 90]):
        ids = walker.walk(walker.compiler.matcher(spec), seed=seed, free_steps=free)
        validate(schema, tok.decode_bytes(ids).decode("utf-8"))


@pytest.mark.parametrize(
    ("name", "doc"),
    [
        ("weather_args", '{"location": "São Paulo, Brazil", "unit": "celsius", "days": 7}'),
        (
            "order",
            '{"order_id": "ORD-004211", "items": [{"sku": "ABC-1234", "quantity": 2, '
            '"unit_price": 19.99}], "status": "shipped", "gift": false}',
        ),
        ("event", '{"title": "Launch 🚀", "date": "2025-03-01", "attendees": [], "all_day": true}'),
    ],
)
def test_the_tokenizers_own_tokens_for_a_valid_reply_are_allowed(
    name: str, doc: str, tok: ModelTokenizer, walker: Walker, eos: list[int]
) -> None:
    compiler = walker.compiler
    matcher = compiler.matcher(ConstraintSpec.json_schema(SCHEMAS[name]))
    for token in [*tok.encode(doc), eos[0]]:
        allowed = unpack_bitmask(compiler.fill_next_token_bitmask([matcher]), tok.n_vocab)[0]
        assert allowed[token], tok.decode([token])
        assert matcher.accept(token), matcher.error
    assert matcher.finished


def test_special_tokens_stay_out_of_strings(tok: ModelTokenizer, walker: Walker) -> None:
    matcher = walker.compiler.matcher(ConstraintSpec.json_schema({"type": "string"}))
    assert matcher.accept(tok.encode('"')[0])
    allowed = unpack_bitmask(walker.compiler.fill_next_token_bitmask([matcher]), tok.n_vocab)[0]
    assert allowed.sum() > 40000
    assert not any(allowed[t] for t in tok.special_tokens.values())


def test_required_tool_calls_parse_and_validate(tok: ModelTokenizer, walker: Walker) -> None:
    tools = [
        {"type": "function", "function": {"name": n, "parameters": SCHEMAS[s]}}
        for n, s in [("get_weather", "weather_args"), ("search", "search_query")]
    ]
    tool_spec = active_tools(tools, "required", parallel_tool_calls=False)
    assert tool_spec is not None
    spec = ConstraintSpec.json_schema(tool_reply_schema(tool_spec))
    for seed in range(4):
        ids = walker.walk(walker.compiler.matcher(spec), seed=seed, free_steps=20 * seed)
        (call,) = parse_tool_reply(tok.decode_bytes(ids).decode("utf-8")).tool_calls
        params = SCHEMAS["weather_args" if call.name == "get_weather" else "search_query"]
        validate(params, call.arguments)


def test_unsupported_keywords_are_refused_with_the_real_vocabulary(walker: Walker) -> None:
    with pytest.raises(ConstraintError, match="uniqueItems"):
        walker.compiler.compile(ConstraintSpec.json_schema({"uniqueItems": True}))
