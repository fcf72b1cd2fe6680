"""The generic tool-call format (``sdk.tokens``) compiled by the server: walks through the
reply schema's masks for each tool choice are valid replies, with valid arguments.

The schema's shape and the reading of replies are tested without a grammar engine in
``tests/unit/sdk/tokens``; the server's refusal of bad tools in ``tests/unit/server_ref/api``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from kit.grammar_walk import SCHEMAS, Walker, validate

from sdk.tokens import (
    ModelTokenizer,
    ToolReply,
    active_tools,
    parse_tool_reply,
    tokenizer_from_gguf,
    tool_reply_schema,
)
from server_ref.engine.constraints import ConstraintError, ConstraintSpec, GrammarCompiler


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


def tool_call_schema(
    tools: list[dict[str, Any]],
    choice: Any = "auto",
    *,
    parallel_tool_calls: bool | None = None,
    response_schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec = active_tools(tools, choice, parallel_tool_calls)
    assert spec is not None
    return tool_reply_schema(spec, response_schema=response_schema)


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
) -> list[ToolReply]:
    """Constrained walks through ``schema``, each checked against it and parsed."""
    spec = ConstraintSpec.json_schema(schema)
    outputs = []
    for seed in range(runs):
        matcher = walker.compiler.matcher(spec)
        text = tok.decode_bytes(walker.walk(matcher, seed=seed, free_steps=15 * seed)).decode()
        validate(schema, text)
        outputs.append(parse_tool_reply(text))
    return outputs


def check_calls(output: ToolReply, names: set[str]) -> None:
    assert output.content is None and output.tool_calls
    for call in output.tool_calls:
        assert call.name in names
        validate(PARAMS[call.name], call.arguments)


@pytest.mark.parametrize("parallel", [True, False])
def test_required_always_calls_known_tools_with_valid_arguments(
    parallel: bool, walker: Walker, tok: ModelTokenizer
) -> None:
    schema = tool_call_schema(TOOLS, "required", parallel_tool_calls=parallel)
    names_seen = set()
    for output in walk_outputs(walker, tok, schema, runs=8):
        check_calls(output, set(PARAMS))
        assert parallel or len(output.tool_calls) == 1
        names_seen |= {c.name for c in output.tool_calls}
    assert len(names_seen) > 1  # the walks do choose between tools


def test_parallel_calls_allow_several_items() -> None:
    schema = tool_call_schema(TOOLS, "required")
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
    for output in walk_outputs(walker, tok, schema):
        check_calls(output, {"get_weather"})
        assert len(output.tool_calls) == 1


def test_auto_chooses_between_a_reply_and_calls(walker: Walker, tok: ModelTokenizer) -> None:
    schema = tool_call_schema(TOOLS, "auto")
    assert len(schema["anyOf"]) == 2
    kinds = set()
    for output in walk_outputs(walker, tok, schema, runs=10):
        if output.content is not None:
            assert output.tool_calls == () and isinstance(output.content, str)
            kinds.add("reply")
        else:
            check_calls(output, set(PARAMS))
            kinds.add("calls")
    assert kinds == {"reply", "calls"}


def test_auto_with_a_response_schema_constrains_the_reply(
    walker: Walker, tok: ModelTokenizer
) -> None:
    schema = tool_call_schema(TOOLS, "auto", response_schema=SCHEMAS["classification"])
    reply = '{"response": {"label": "neutral", "confidence": 0.5, "keywords": []}}'
    validate(schema, reply)
    assert parse_tool_reply(reply).content == reply[len('{"response": ') : -1]
    for output in walk_outputs(walker, tok, schema, runs=4):
        if output.content is not None:
            validate(SCHEMAS["classification"], output.content)


def test_strict_tools_get_closed_parameters() -> None:
    schema = tool_call_schema([tool("f", {"type": "object"}, strict=True), tool("g", {})])
    assert schema["$defs"]["tool0"]["additionalProperties"] is False
    assert schema["$defs"]["tool1"]["additionalProperties"] is False  # no parameters: none
    open_tool = tool_call_schema([tool("h", {"type": "object", "properties": {}})])
    assert "additionalProperties" not in open_tool["$defs"]["tool0"]


def test_a_bad_parameters_schema_fails_when_compiled(walker: Walker) -> None:
    schema = tool_call_schema([tool("f", {"type": "array", "uniqueItems": True})], "required")
    with pytest.raises(ConstraintError, match="uniqueItems"):
        walker.compiler.compile(ConstraintSpec.json_schema(schema))
