"""The generic tool-call format: schema from tools + tool_choice, constrained walks, parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from kit.grammar_walk import SCHEMAS, Walker, validate

from sdk.tokens import ModelTokenizer, tokenizer_from_gguf
from server_ref.engine.constraints import ConstraintError, ConstraintSpec, GrammarCompiler
from server_ref.engine.tool_calls import (
    ToolCall,
    ToolOutput,
    ToolOutputError,
    parse_tool_output,
    tool_call_schema,
)


def tool(name: str, parameters: dict[str, Any] | None = None, **fn: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "description": f"the {name} tool", **fn}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


TOOLS = [
    tool("get_weather", SCHEMAS["weather_args"]),
    tool("create_user", SCHEMAS["pydantic_refs"], strict=True),  # $defs/$ref, open objects
    tool("ping"),  # no parameters: arguments must be {}
]
PARAMS = {
    "get_weather": SCHEMAS["weather_args"],
    "create_user": SCHEMAS["pydantic_refs"],
    "ping": {"type": "object", "maxProperties": 0},
}


@pytest.fixture(scope="module")
def tok(tiny_gguf: Path) -> ModelTokenizer:
    return tokenizer_from_gguf(tiny_gguf)


@pytest.fixture(scope="module")
def walker(tok: ModelTokenizer) -> Walker:
    assert tok.eos_token_id is not None
    eos = [tok.eos_token_id]
    compiler = GrammarCompiler.from_tokenizer(tok, vocab_size=tok.n_vocab, eos_token_ids=eos)
    return Walker(compiler, [tok.token_bytes(i) for i in range(tok.n_vocab)], eos)


def walk_outputs(
    walker: Walker, tok: ModelTokenizer, schema: dict[str, Any], runs: int = 6
) -> list[ToolOutput]:
    """Constrained walks through ``schema``, each checked against it and parsed."""
    spec = ConstraintSpec.json_schema(schema)
    outputs = []
    for seed in range(runs):
        matcher = walker.compiler.matcher(spec)
        text = tok.decode_bytes(walker.walk(matcher, seed=seed, free_steps=15 * seed)).decode()
        validate(schema, text)
        outputs.append(parse_tool_output(text))
    return outputs


def check_calls(output: ToolOutput, names: set[str]) -> None:
    assert output.content is None and output.tool_calls
    for call in output.tool_calls:
        assert call.name in names
        validate(PARAMS[call.name], call.arguments)


@pytest.mark.parametrize("parallel", [True, False])
def test_required_always_calls_known_tools_with_valid_arguments(
    parallel: bool, walker: Walker, tok: ModelTokenizer
) -> None:
    schema = tool_call_schema(TOOLS, "required", parallel_tool_calls=parallel)
    assert schema is not None
    names_seen = set()
    for output in walk_outputs(walker, tok, schema, runs=8):
        check_calls(output, set(PARAMS))
        assert parallel or len(output.tool_calls) == 1
        names_seen |= {c.name for c in output.tool_calls}
    assert len(names_seen) > 1  # the walks do choose between tools


def test_parallel_calls_allow_several_items() -> None:
    schema = tool_call_schema(TOOLS, "required")
    assert schema is not None
    text = (
        '{"tool_calls": [{"name": "ping", "arguments": {}}, '
        '{"name": "get_weather", "arguments": {"location": "Oslo", "unit": "celsius"}}]}'
    )
    validate(schema, text)
    single = tool_call_schema(TOOLS, "required", parallel_tool_calls=False)
    with pytest.raises(jsonschema.ValidationError):
        validate(single, text)


def test_a_named_tool_gets_exactly_one_call_to_it(walker: Walker, tok: ModelTokenizer) -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    schema = tool_call_schema(TOOLS, choice)
    assert schema is not None
    for output in walk_outputs(walker, tok, schema):
        check_calls(output, {"get_weather"})
        assert len(output.tool_calls) == 1


def test_auto_chooses_between_a_reply_and_calls(walker: Walker, tok: ModelTokenizer) -> None:
    schema = tool_call_schema(TOOLS, "auto")
    assert schema is not None and len(schema["anyOf"]) == 2
    kinds = set()
    for output in walk_outputs(walker, tok, schema, runs=10):
        if output.content is not None:
            assert output.tool_calls == [] and isinstance(output.content, str)
            kinds.add("reply")
        else:
            check_calls(output, set(PARAMS))
            kinds.add("calls")
    assert kinds == {"reply", "calls"}


def test_auto_with_a_response_schema_constrains_the_reply(
    walker: Walker, tok: ModelTokenizer
) -> None:
    schema = tool_call_schema(TOOLS, "auto", response_schema=SCHEMAS["classification"])
    assert schema is not None
    reply = '{"response": {"label": "neutral", "confidence": 0.5, "keywords": []}}'
    validate(schema, reply)
    assert parse_tool_output(reply).content == reply[len('{"response": ') : -1]
    for output in walk_outputs(walker, tok, schema, runs=4):
        if output.content is not None:
            validate(SCHEMAS["classification"], output.content)


@pytest.mark.parametrize("choice", ["none", "auto"])
def test_no_constraint_without_tools_or_with_none(choice: str) -> None:
    assert tool_call_schema([], choice) is None
    assert tool_call_schema(TOOLS, "none") is None


def test_strict_tools_get_closed_parameters() -> None:
    schema = tool_call_schema([tool("f", {"type": "object"}, strict=True), tool("g", {})])
    assert schema is not None
    assert schema["$defs"]["tool0"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["$defs"]["tool1"]


@pytest.mark.parametrize(
    ("tools", "choice", "message"),
    [
        ([tool("f"), {"type": "function", "function": {}}], "auto", r"tools\[1\].function.name"),
        ([{"type": "function"}], "auto", r"tools\[0\].function.name is required"),
        ([tool("f"), tool("f")], "auto", "two tools are named 'f'"),
        ([tool("bad name!")], "auto", "letters, digits"),
        ([{"type": "retrieval"}], "auto", "only tools of type 'function'"),
        ([tool("f", "not a schema")], "auto", "parameters must be a JSON schema"),
        ([tool("f")], {"type": "function", "function": {"name": "g"}}, "'g', which is not in"),
        ([tool("f")], {"type": "function"}, "tool_choice must be"),
        ([tool("f")], "sometimes", "'sometimes' is not one of"),
        ([], "required", "needs at least one tool"),
    ],
)
def test_bad_tools_and_choices_raise_constraint_errors(
    tools: list[dict[str, Any]], choice: Any, message: str
) -> None:
    with pytest.raises(ConstraintError, match=message):
        tool_call_schema(tools, choice)


def test_a_bad_parameters_schema_fails_when_compiled(walker: Walker) -> None:
    schema = tool_call_schema([tool("f", {"type": "array", "uniqueItems": True})], "required")
    assert schema is not None
    with pytest.raises(ConstraintError, match="uniqueItems"):
        walker.compiler.compile(ConstraintSpec.json_schema(schema))


def test_arguments_keep_the_text_the_model_wrote() -> None:
    args = '{"city": "Z\\u00fcrich",  "n": 1.50, "tags": ["a"  , "b"]}'
    calls = f'{{"name": "f", "arguments": {args}}}, {{"name": "g", "arguments": {{}}}}'
    text = f'{{"tool_calls": [{calls}]}}'
    out = parse_tool_output(text)
    assert out == ToolOutput(None, [ToolCall("f", args), ToolCall("g", "{}")])
    assert json.loads(out.tool_calls[0].arguments)["city"] == "Zürich"


def test_parsing_tolerates_whitespace_and_decodes_the_reply() -> None:
    assert parse_tool_output(' {\n "response" : "line 1\\nline 2" }\n') == ToolOutput(
        "line 1\nline 2"
    )
    assert parse_tool_output('{"tool_calls": []}') == ToolOutput(None, [])


@pytest.mark.parametrize(
    "text",
    [
        "",
        '{"tool_calls": [{"name": "f", "arguments": {"x": 1',  # cut by max_tokens
        '{"response": "unfinished',
        '{"response": "a"} trailing',
        '{"other": 1}',
        '{"tool_calls": [{"name": 3, "arguments": {}}]}',
        '{"tool_calls": [{"name": "f"}]}',
        '{"tool_calls": [1 2]}',
        "[]",
    ],
)
def test_incomplete_or_foreign_replies_raise_tool_output_error(text: str) -> None:
    with pytest.raises(ToolOutputError, match="not a complete tool-call reply"):
        parse_tool_output(text)
