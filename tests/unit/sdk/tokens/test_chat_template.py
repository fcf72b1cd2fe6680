"""sdk.tokens.chat_template: HF-compatible rendering in a sandbox, every failure a clear error."""

from __future__ import annotations

import pytest

from sdk.tokens import ChatTemplateError, TokenizerError, render_chat_template

# SmolLM2's template as stored in its GGUF (ChatML with a default system prompt).
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ALTERNATING = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant') }}{% endif %}"
    "[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}"
)


def test_chatml_with_default_system_prompt() -> None:
    out = render_chat_template(CHATML, [{"role": "user", "content": "What is 2+2?"}])

    assert out == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chatml_without_generation_prompt_keeps_given_system_prompt() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]

    out = render_chat_template(CHATML, messages, add_generation_prompt=False)

    assert out == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


def test_bos_eos_and_extra_variables_reach_the_template() -> None:
    template = "{{ bos_token }}{{ tools | length }} tools{{ eos_token }}"

    out = render_chat_template(template, [], bos_token="<s>", eos_token="</s>", tools=[{}, {}])

    assert out == "<s>2 tools</s>"


def test_trim_blocks_lstrip_blocks_and_loop_controls_like_transformers() -> None:
    template = (
        "{% for m in messages %}\n"
        "    {% if loop.index > 1 %}{% break %}{% endif %}\n"
        "{{ m['content'] }}\n"
        "{% endfor %}\n"
    )
    messages = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]

    assert render_chat_template(template, messages) == "one\n"


def test_tojson_keeps_unicode_and_html_characters() -> None:
    out = render_chat_template("{{ messages[0] | tojson }}", [{"role": "user", "content": "<é>"}])

    assert out == '{"role": "user", "content": "<é>"}'


def test_raise_exception_becomes_chat_template_error() -> None:
    messages = [{"role": "assistant", "content": "hello"}]

    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        render_chat_template(ALTERNATING, messages)


def test_alternating_template_renders_valid_conversations() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]

    out = render_chat_template(ALTERNATING, messages, bos_token="<s>", eos_token="</s>")

    assert out == "<s>[user] hi</s>[assistant] yo</s>"


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(ChatTemplateError, match="syntax error on line 2"):
        render_chat_template("ok\n{% for m in messages %}{{ m }", [])


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "{{ messages.__class__.__base__.__subclasses__() }}",
        "{{ raise_exception.__globals__ }}",
        "{% set _ = messages.append({'role': 'x'}) %}",  # the environment is immutable
        "{{ 'a' * 10 ** 9 }}",  # output size is bounded
        "{{ 2 ** 100000 }}",
    ],
)
def test_sandbox_violations_are_chat_template_errors(template: str) -> None:
    with pytest.raises(ChatTemplateError, match=r"sandbox|unsafe"):
        render_chat_template(template, [{"role": "user", "content": "x"}])


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ nothing.here }}", "undefined value"),
        ("{{ messages[0]['content'] + 1 }}", "TypeError"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ],
)
def test_runtime_failures_are_chat_template_errors(template: str, message: str) -> None:
    with pytest.raises(ChatTemplateError, match=message):
        render_chat_template(template, [{"role": "user", "content": "x"}])


def test_a_message_must_be_a_mapping() -> None:
    with pytest.raises(ChatTemplateError, match="message 1 must be a mapping"):
        render_chat_template(CHATML, [{"role": "user", "content": "x"}, "oops"])  # type: ignore[list-item]


def test_chat_template_error_is_a_tokenizer_and_value_error() -> None:
    assert issubclass(ChatTemplateError, TokenizerError)
    assert issubclass(ChatTemplateError, ValueError)
