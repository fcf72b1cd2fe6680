"""The encoding built from the real default GGUF reproduces llama.cpp's token ids exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sdk.tokens import ModelTokenizer, tokenizer_from_gguf

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def parity_cases() -> list[dict[str, Any]]:
    lines = (FIXTURES / "smollm2_tokenizer_parity.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def greedy_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(
        (FIXTURES / "smollm2_greedy_llamacpp.json").read_text(encoding="utf-8")
    )
    return cases


@pytest.fixture(scope="module")
def tok(default_gguf: Path) -> ModelTokenizer:
    return tokenizer_from_gguf(default_gguf)


def test_every_fixture_line_matches_llama_cpp(tok: ModelTokenizer) -> None:
    cases = parity_cases()
    mismatches = [case["text"] for case in cases if tok.encode(case["text"]) != case["ids"]]

    assert len(cases) >= 400
    assert mismatches == [], f"{len(mismatches)}/{len(cases)} lines differ, e.g. {mismatches[:3]}"


def test_decode_inverts_encode_on_every_fixture_line(tok: ModelTokenizer) -> None:
    failures = [c["text"] for c in parity_cases() if tok.decode(tok.encode(c["text"])) != c["text"]]

    assert failures == []


def test_chat_prompts_encode_to_llama_cpp_prompt_ids(tok: ModelTokenizer) -> None:
    for case in greedy_cases():
        assert tok.encode(case["prompt"]) == case["prompt_ids"], case["prompt"]


def test_chat_template_renders_the_fixture_prompt(tok: ModelTokenizer) -> None:
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}]
    )

    assert prompt == greedy_cases()[0]["prompt"]


def test_metadata_of_the_default_model(tok: ModelTokenizer) -> None:
    assert tok.pre_tokenizer == "smollm"
    assert tok.n_vocab == 49152
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert tok.context_length == 8192
