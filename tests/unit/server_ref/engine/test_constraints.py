"""Grammar constraints on the tiny model's vocabulary: compile errors, cache, masks, walks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from kit.grammar_walk import SCHEMAS, Walker, validate

from sdk.tokens import ModelTokenizer, tokenizer_from_gguf
from server_ref.engine.constraints import ConstraintError, ConstraintSpec, GrammarCompiler
from server_ref.engine.sampler import unpack_bitmask


@pytest.fixture(scope="module")
def tok(tiny_gguf: Path) -> ModelTokenizer:
    return tokenizer_from_gguf(tiny_gguf)


@pytest.fixture(scope="module")
def eos(tok: ModelTokenizer) -> int:
    assert tok.eos_token_id is not None
    return tok.eos_token_id


@pytest.fixture(scope="module")
def compiler(tok: ModelTokenizer, eos: int) -> GrammarCompiler:
    return GrammarCompiler.from_tokenizer(tok, vocab_size=tok.n_vocab, eos_token_ids=[eos])


@pytest.fixture(scope="module")
def walker(tok: ModelTokenizer, compiler: GrammarCompiler, eos: int) -> Walker:
    return Walker(compiler, [tok.token_bytes(i) for i in range(tok.n_vocab)], [eos])


def decode(tok: ModelTokenizer, ids: list[int]) -> str:
    return tok.decode_bytes(ids).decode("utf-8")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_walks_through_the_mask_give_schema_valid_json(
    name: str, tok: ModelTokenizer, compiler: GrammarCompiler, walker: Walker
) -> None:
    spec = ConstraintSpec.json_schema(SCHEMAS[name], strict=True)
    for seed, free in enumerate([0, 10, 40, 120]):
        ids = walker.walk(compiler.matcher(spec), seed=seed, free_steps=free)
        validate(SCHEMAS[name], decode(tok, ids))


def test_json_object_walks_give_objects(
    tok: ModelTokenizer, compiler: GrammarCompiler, walker: Walker
) -> None:
    texts = set()
    for seed, free in enumerate([0, 20, 80, 200]):
        matcher = compiler.matcher(ConstraintSpec.json_object())
        text = decode(tok, walker.walk(matcher, seed=seed, free_steps=free))
        validate(None, text)
        texts.add(text)
    assert len(texts) > 1  # the random phase really explores


def test_output_is_compact_json_in_property_order(
    tok: ModelTokenizer, compiler: GrammarCompiler, walker: Walker
) -> None:
    schema = SCHEMAS["weather_args"]
    ids = walker.walk(compiler.matcher(ConstraintSpec.json_schema(schema)), seed=0, free_steps=0)
    text = decode(tok, ids)
    assert text.startswith('{"location": "')
    assert '", "unit": "' in text
    assert "\n" not in text


def test_canonical_tokens_of_a_valid_document_are_all_allowed(
    tok: ModelTokenizer, compiler: GrammarCompiler, eos: int
) -> None:
    doc = '{"location": "Paris, France", "unit": "celsius", "days": 3}'
    matcher = compiler.matcher(ConstraintSpec.json_schema(SCHEMAS["weather_args"]))
    for token in [*tok.encode(doc), eos]:
        allowed = unpack_bitmask(compiler.fill_next_token_bitmask([matcher]), tok.n_vocab)[0]
        assert allowed[token], tok.decode([token])
        assert matcher.accept(token)
    assert matcher.finished and matcher.error is None


def test_the_grammar_end_finishes_and_then_only_eos_is_allowed(
    tok: ModelTokenizer, compiler: GrammarCompiler, eos: int
) -> None:
    matcher = compiler.matcher(ConstraintSpec.regex("(yes|no)"))
    for token in tok.encode("ye"):
        assert matcher.accept(token) and not matcher.finished
    assert matcher.accept(tok.encode("s")[0])
    assert matcher.finished
    allowed = unpack_bitmask(compiler.fill_next_token_bitmask([matcher]), tok.n_vocab)[0]
    assert allowed.nonzero().flatten().tolist() == [eos]


def test_a_rejected_token_is_an_error_and_leaves_only_eos(
    tok: ModelTokenizer, compiler: GrammarCompiler, eos: int
) -> None:
    matcher = compiler.matcher(ConstraintSpec.json_object())
    assert not matcher.accept(tok.encode("x")[0])
    assert matcher.error and "doesn't satisfy the grammar" in matcher.error
    assert matcher.finished
    allowed = unpack_bitmask(compiler.fill_next_token_bitmask([matcher]), tok.n_vocab)[0]
    assert allowed.nonzero().flatten().tolist() == [eos]


def test_special_tokens_never_appear_inside_strings(
    tok: ModelTokenizer, compiler: GrammarCompiler, eos: int
) -> None:
    matcher = compiler.matcher(ConstraintSpec.json_schema({"type": "string"}))
    assert matcher.accept(tok.encode('"')[0])
    allowed = unpack_bitmask(compiler.fill_next_token_bitmask([matcher]), tok.n_vocab)[0]
    assert allowed.sum() > 100  # almost any text may follow...
    assert not any(allowed[t] for t in tok.special_tokens.values())  # ...but no special token


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "objekt"}, ["invalid JSON schema", "objekt"]),
        ({"properties": {"a": {"$ref": "#/$defs/Missing"}}}, ["invalid", "/$defs/Missing"]),
        ({"type": "integer", "minimum": 5, "maximum": 1}, ["invalid", "minimum", "maximum"]),
        ({"type": "string", "pattern": "([a-z"}, ["invalid", "unclosed character class"]),
        ({"type": "array", "uniqueItems": True}, ["unsupported JSON schema", "uniqueItems"]),
        ({"properties": {"a": {"not": {"type": "string"}}}}, ["unsupported", '"not"']),
        ({"if": {"required": ["a"]}, "then": {"required": ["b"]}}, ["unsupported", '"if"']),
        ({"type": "string", "format": "password"}, ["unsupported", "format: password"]),
        ({"type": "string", "pattern": "^(?=a)[a-z]+$"}, ["invalid", "look-around"]),
    ],
)
def test_bad_schemas_raise_a_constraint_error_naming_the_problem(
    schema: dict[str, Any], words: list[str], compiler: GrammarCompiler
) -> None:
    with pytest.raises(ConstraintError) as info:
        compiler.compile(ConstraintSpec.json_schema(schema))
    assert isinstance(info.value, ValueError)  # what the engine's request check turns into a 400
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("schema", [[{"type": "string"}], True, {"x": float("nan")}, {"x": {1}}])
def test_a_schema_that_is_not_a_json_object_is_refused(schema: Any) -> None:
    with pytest.raises(ConstraintError, match="JSON"):
        ConstraintSpec.json_schema(schema)


def test_bad_regex_and_grammar_raise(compiler: GrammarCompiler) -> None:
    with pytest.raises(ConstraintError, match="invalid regex"):
        compiler.compile(ConstraintSpec.regex("(unclosed"))
    with pytest.raises(ConstraintError, match="invalid grammar"):
        compiler.compile(ConstraintSpec.lark("start: undefined_rule"))


def test_lark_grammars_constrain_too(
    tok: ModelTokenizer, compiler: GrammarCompiler, walker: Walker
) -> None:
    spec = ConstraintSpec.lark('start: "the " ("cat" | "dog") " is " /[0-9]{1,2}/')
    for seed in range(4):
        text = decode(tok, walker.walk(compiler.matcher(spec), seed=seed, free_steps=10))
        assert text.split(" ")[:3] in (["the", "cat", "is"], ["the", "dog", "is"])
        assert text.split(" ")[3].isdigit()


def test_compiled_grammars_are_cached_by_spec(tok: ModelTokenizer, eos: int) -> None:
    small = GrammarCompiler.from_tokenizer(
        tok, vocab_size=tok.n_vocab, eos_token_ids=[eos], cache_size=2
    )
    a = ConstraintSpec.json_schema({"type": "object", "properties": {"a": {}, "b": {}}})
    a_again = ConstraintSpec.json_schema({"type": "object", "properties": {"a": {}, "b": {}}})
    b_first = ConstraintSpec.json_schema({"type": "object", "properties": {"b": {}, "a": {}}})
    small.compile(a)
    small.matcher(a_again)
    assert small.cache_info() == (1, 1, 1)
    small.compile(b_first)  # property order decides output order: another grammar
    small.compile(ConstraintSpec.json_schema({"type": "object"}, strict=True))
    assert small.cache_info() == (1, 3, 2)  # bounded: the least recently used one went
    small.compile(a)
    assert small.cache_info() == (1, 4, 2)
    with pytest.raises(ConstraintError):
        small.compile(ConstraintSpec.json_schema({"type": "nope"}))
    assert small.cache_info()[2] == 2  # failures are not cached


def test_strict_closes_objects_that_do_not_say(
    tok: ModelTokenizer, compiler: GrammarCompiler, eos: int
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    doc = tok.encode('{"a": 1, "b"')
    loose = compiler.matcher(ConstraintSpec.json_schema(schema))
    strict = compiler.matcher(ConstraintSpec.json_schema(schema, strict=True))
    assert all(loose.accept(t) for t in doc)
    assert not all(strict.accept(t) for t in doc)


def test_masks_of_many_sequences_are_filled_in_one_call(
    tok: ModelTokenizer, compiler: GrammarCompiler
) -> None:
    specs = [ConstraintSpec.regex("a+"), ConstraintSpec.regex("b+"), ConstraintSpec.json_object()]
    matchers = [compiler.matcher(s) for s in specs]
    together = compiler.fill_next_token_bitmask(matchers)
    assert together.shape == (3, (tok.n_vocab + 31) // 32)
    for i, m in enumerate(matchers):
        assert torch.equal(together[i], compiler.fill_next_token_bitmask([m])[0])
    allowed = unpack_bitmask(together, tok.n_vocab)
    assert allowed[0, tok.encode("a")[0]] and not allowed[0, tok.encode("b")[0]]
    assert allowed[2, tok.encode("{")[0]] and allowed[2].sum() <= 4  # '{' and tokens like '{"'
    assert compiler.fill_next_token_bitmask([]).shape == (0, (tok.n_vocab + 31) // 32)


def test_padding_ids_beyond_the_tokenizer_are_never_allowed(tok: ModelTokenizer, eos: int) -> None:
    padded = tok.n_vocab + 40  # the model's logits are wider than the vocabulary
    compiler = GrammarCompiler.from_tokenizer(tok, vocab_size=padded, eos_token_ids=[eos])
    walker = Walker(compiler, [tok.token_bytes(i) for i in range(tok.n_vocab)], [eos])
    matcher = compiler.matcher(ConstraintSpec.json_schema({"type": "string"}))
    allowed = unpack_bitmask(compiler.fill_next_token_bitmask([matcher]), padded)[0]
    assert allowed[: tok.n_vocab].any() and not allowed[tok.n_vocab :].any()
    ids = walker.walk(matcher, seed=3, free_steps=30)
    assert max(ids) < tok.n_vocab


def test_tokens_beyond_the_model_vocabulary_are_left_out(tok: ModelTokenizer) -> None:
    im_end, endoftext = tok.special_tokens["<|im_end|>"], tok.special_tokens["<|endoftext|>"]
    smaller = im_end  # the model cannot produce <|im_end|> (the last id)
    with pytest.raises(ValueError, match="EOS"):
        GrammarCompiler.from_tokenizer(tok, vocab_size=smaller, eos_token_ids=[im_end])
    compiler = GrammarCompiler.from_tokenizer(tok, vocab_size=smaller, eos_token_ids=[endoftext])
    matcher = compiler.matcher(ConstraintSpec.regex("(yes|no)"))
    bitmask = compiler.fill_next_token_bitmask([matcher])
    assert bitmask.shape == (1, (smaller + 31) // 32)
    assert unpack_bitmask(bitmask, bitmask.shape[1] * 32)[0, smaller:].sum() == 0
