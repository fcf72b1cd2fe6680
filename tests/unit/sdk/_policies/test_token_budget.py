"""Token budgets: the planner's rules, and the client refusing or trimming before it sends."""

from __future__ import annotations

from typing import Any

import pytest
from kit.clients import Api
from kit.tokenizer_server import MODEL, USER, FakeServer, toy_export, toy_tokenizer

import sdk
from sdk import ContextWindowExceededError, TokenBudget, TokenBudgetError
from sdk.tokens import ChatTemplateError, TokenCountWarning, fit_messages, fit_prompt

TOK = toy_tokenizer(context_length=256)
SYSTEM = {"role": "system", "content": "You answer briefly."}


def turns(count: int, size: int = 40) -> list[dict[str, Any]]:
    """Alternating user/assistant turns of ``size`` characters each, oldest first."""
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": f"{i:03d} " + "x" * (size - 4)} for i in range(count)]


# --- the rules (pure, local counting) ----------------------------------------------------------


def test_a_call_that_fits_is_left_alone() -> None:
    messages = [SYSTEM, *USER]
    plan = fit_messages(TOK, messages, max_tokens=16)
    assert plan.messages == messages and plan.max_tokens == 16 and not plan.trimmed
    assert plan.prompt_tokens == TOK.count_chat(messages)
    assert plan.completion_room == 256 - plan.prompt_tokens


def test_by_default_a_call_that_does_not_fit_is_refused_with_the_counts() -> None:
    prompt_tokens = TOK.count_chat(USER)
    with pytest.raises(ContextWindowExceededError) as info:
        fit_messages(TOK, USER, max_tokens=256 - prompt_tokens + 1, budget=TokenBudget())
    err = info.value
    assert (err.prompt_tokens, err.max_tokens, err.context_length) == (
        prompt_tokens,
        256 - prompt_tokens + 1,
        256,
    )
    assert err.exact and "context window is 256 tokens" in str(err)
    assert "TokenBudget(trim=...)" in str(err) and isinstance(err, ValueError)


def test_clamp_lowers_max_tokens_to_what_is_left() -> None:
    room = 256 - TOK.count_chat(USER)
    budget = TokenBudget(clamp_max_tokens=True, min_completion_tokens=8)
    assert fit_messages(TOK, USER, max_tokens=1000, budget=budget).max_tokens == room
    assert fit_messages(TOK, USER, max_tokens=5, budget=budget).max_tokens == 5
    with pytest.raises(ContextWindowExceededError):  # less room than min_completion_tokens
        fit_messages(
            TOK,
            USER,
            max_tokens=1000,
            budget=TokenBudget(clamp_max_tokens=True, min_completion_tokens=room + 1),
        )


def test_without_max_tokens_the_prompt_must_leave_min_completion_tokens() -> None:
    room = 256 - TOK.count_chat(USER)
    assert (
        fit_messages(TOK, USER, budget=TokenBudget(min_completion_tokens=room)).max_tokens is None
    )
    with pytest.raises(ContextWindowExceededError):
        fit_messages(TOK, USER, budget=TokenBudget(min_completion_tokens=room + 1))


def test_drop_oldest_keeps_the_system_message_and_the_last_user_turn() -> None:
    history = [SYSTEM, *turns(20), {"role": "user", "content": "the question"}]
    plan = fit_messages(TOK, history, max_tokens=32, budget=TokenBudget(trim="drop_oldest"))
    assert plan.trimmed == ("drop_oldest",) and plan.prompt_tokens + 32 <= 256
    kept = plan.messages
    assert kept is not None and kept[0] == SYSTEM and kept[-1] == history[-1]
    dropped = len(history) - len(kept)
    assert kept[1:] == history[1 + dropped :]  # a suffix of the conversation: the newest turns
    # dropping one turn fewer would not fit: the fewest turns were dropped
    assert TOK.count_chat([SYSTEM, *history[dropped:]]) + 32 > 256


def test_drop_oldest_keeps_what_follows_the_last_user_message() -> None:
    history = [
        *turns(12),
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "Sure"},
    ]
    plan = fit_messages(TOK, history, max_tokens=100, budget=TokenBudget(trim="drop_oldest"))
    assert plan.messages is not None and plan.messages[-2:] == history[-2:]


def test_drop_oldest_cannot_drop_the_system_message_or_the_last_user_turn() -> None:
    history = [SYSTEM, *turns(4), {"role": "user", "content": "y" * 300}]
    with pytest.raises(ContextWindowExceededError) as info:
        fit_messages(TOK, history, max_tokens=10, budget=TokenBudget(trim="drop_oldest"))
    message = str(info.value)
    assert "still too long after drop_oldest" in message
    assert "system message and the last user turn are always kept" in message
    # the count reported is the smallest conversation tried: system + last user turn
    assert info.value.prompt_tokens == TOK.count_chat([SYSTEM, history[-1]])


def test_truncate_middle_cuts_the_longest_message() -> None:
    long_text = "BEGIN " + "word " * 200 + " END"
    history = [
        SYSTEM,
        {"role": "user", "content": long_text},
        {"role": "assistant", "content": "ok"},
        *USER,
    ]
    budget = TokenBudget(trim="truncate_middle", truncation_marker="[...]")
    plan = fit_messages(TOK, history, max_tokens=20, budget=budget)
    assert plan.messages is not None and plan.prompt_tokens + 20 <= 256
    cut = plan.messages[1]["content"]
    assert cut.startswith("BEGIN word") and cut.endswith("word  END") and "[...]" in cut
    assert [m for i, m in enumerate(plan.messages) if i != 1] == [
        m for i, m in enumerate(history) if i != 1
    ]
    # close to the most that fits: a few more characters would not
    assert plan.prompt_tokens + 20 > 256 - 8


def test_truncate_middle_fails_clearly_when_even_the_marker_does_not_fit() -> None:
    history = [{"role": "system", "content": "s" * 400}, {"role": "user", "content": "u" * 300}]
    with pytest.raises(ContextWindowExceededError, match="after truncate_middle"):
        fit_messages(TOK, history, max_tokens=10, budget=TokenBudget(trim="truncate_middle"))


def test_policies_apply_in_order_until_the_call_fits() -> None:
    history = [SYSTEM, *turns(10), {"role": "user", "content": "z" * 400}]
    budget = TokenBudget(trim=("drop_oldest", "truncate_middle"))
    plan = fit_messages(TOK, history, max_tokens=10, budget=budget)
    assert plan.trimmed == ("drop_oldest", "truncate_middle")
    assert plan.messages is not None and [m["role"] for m in plan.messages] == ["system", "user"]
    assert plan.prompt_tokens + 10 <= 256


def test_completion_prompts_are_truncated_in_the_middle() -> None:
    prompt = "START " + "abc " * 200 + "FINISH"
    plan = fit_prompt(TOK, prompt, max_tokens=50, budget=TokenBudget(trim="truncate_middle"))
    assert (
        plan.prompt is not None
        and plan.prompt.startswith("START")
        and plan.prompt.endswith("FINISH")
    )
    assert plan.prompt_tokens == TOK.count(plan.prompt) and plan.prompt_tokens <= 206
    with pytest.raises(ContextWindowExceededError, match="prompt need"):
        fit_prompt(TOK, prompt, max_tokens=50)


def test_an_unknown_context_window_is_a_clear_error_unless_given() -> None:
    tok = toy_tokenizer(context_length=None)
    with pytest.raises(TokenBudgetError, match=r"context window of 'toy-model' is unknown"):
        fit_messages(tok, USER, max_tokens=10)
    assert (
        fit_messages(tok, USER, max_tokens=10, budget=TokenBudget(context_length=64)).context_length
        == 64
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trim": "drop_newest"},
        {"min_completion_tokens": 0},
        {"context_length": 0},
        {"trim": ("x",)},
    ],
)
def test_bad_budgets_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TokenBudget(**kwargs)


# --- in the client ---------------------------------------------------------------------------


def chat(**kwargs: Any) -> Any:
    kwargs.setdefault("model", MODEL)
    return lambda c: c.chat.completions.create(**kwargs)


def test_over_budget_raises_before_anything_is_sent(api: Api, server: FakeServer) -> None:
    client = api.client(server, token_budget=TokenBudget())
    api.run(lambda c: c.tokenizer(MODEL), client)  # the tokenizer is known: no GETs left
    before = len(server.requests)
    with pytest.raises(ContextWindowExceededError) as info:
        api.run(chat(messages=USER, max_tokens=250), client)
    assert len(server.requests) == before  # no HTTP request at all
    assert info.value.max_tokens == 250 and info.value.context_length == 256
    with pytest.raises(ContextWindowExceededError):  # streams are checked the same way
        api.run(chat(messages=USER, max_tokens=250, stream=True), client)
    assert len(server.requests) == before


def test_a_fresh_client_fetches_the_tokenizer_but_never_sends_the_call(
    api: Api, server: FakeServer
) -> None:
    client = api.client(server, token_budget=TokenBudget())
    with pytest.raises(ContextWindowExceededError):
        api.run(chat(messages=[{"role": "user", "content": "x" * 300}]), client)
    assert all(method == "GET" for method, _ in (p.split(" ") for p in server.paths()))


def test_without_a_budget_nothing_is_counted_or_fetched(api: Api, server: FakeServer) -> None:
    api.run(
        chat(messages=[{"role": "user", "content": "x" * 300}], max_tokens=5), api.client(server)
    )
    assert server.paths() == ["POST /v1/chat/completions"]


def test_the_trimmed_call_is_what_goes_out(api: Api, server: FakeServer) -> None:
    history = [SYSTEM, *turns(20), {"role": "user", "content": "the question"}]
    budget = TokenBudget(trim="drop_oldest", clamp_max_tokens=True, min_completion_tokens=16)
    client = api.client(server, token_budget=budget)
    reply = api.run(chat(messages=history, max_tokens=10_000), client)
    sent = server.log[-1][2]["body"]
    assert sent["messages"][0] == SYSTEM and sent["messages"][-1] == history[-1]
    assert len(sent["messages"]) < len(history)
    assert sent["max_tokens"] == 256 - reply.usage.prompt_tokens >= 16  # clamped to the rest


def test_max_completion_tokens_is_clamped_under_its_own_name(api: Api, server: FakeServer) -> None:
    client = api.client(server, token_budget=TokenBudget(clamp_max_tokens=True))
    api.run(chat(messages=USER, max_completion_tokens=999), client)
    sent = server.log[-1][2]["body"]
    assert "max_tokens" not in sent and sent["max_completion_tokens"] < 256


def test_a_per_call_budget_replaces_the_clients(api: Api, server: FakeServer) -> None:
    client = api.client(server, token_budget=TokenBudget())
    api.run(chat(messages=USER, max_tokens=999, budget=None), client)  # off for this call
    assert server.log[-1][2]["body"]["max_tokens"] == 999
    api.run(chat(messages=USER, max_tokens=999, budget=TokenBudget(clamp_max_tokens=True)), client)
    assert server.log[-1][2]["body"]["max_tokens"] < 256
    plain = api.client(server)  # no client budget, one for this call
    with pytest.raises(ContextWindowExceededError):
        api.run(chat(messages=USER, max_tokens=999, budget=TokenBudget()), plain)


def test_completion_prompts_in_every_shape(api: Api, server: FakeServer) -> None:
    budget = TokenBudget(trim="truncate_middle")
    client = api.client(server, token_budget=budget)
    complete = lambda **kw: lambda c: c.completions.create(model=MODEL, **kw)  # noqa: E731
    api.run(complete(prompt="hello " * 300, max_tokens=20), client)
    assert server.log[-1][2]["usage"]["prompt_tokens"] + 20 <= 256
    api.run(complete(prompt=["short", "hello " * 300], max_tokens=20), client)
    first, second = server.log[-1][2]["body"]["prompt"]
    assert first == "short" and len(second) < 6 * 300
    with pytest.raises(ContextWindowExceededError, match="prompt need 300 tokens"):
        api.run(complete(prompt=[7] * 300, max_tokens=5), client)  # ids cannot be trimmed
    api.run(complete(prompt=[[7] * 10, [8] * 20], max_tokens=5), client)


def test_a_template_that_raises_fails_locally(api: Api) -> None:
    export, ranks = toy_export(chat_template="{{ raise_exception('no system role') }}")
    server = FakeServer(export, ranks)
    client = api.client(server, token_budget=TokenBudget())
    with pytest.raises(ChatTemplateError, match="no system role"):
        api.run(chat(messages=USER), client)
    assert "POST /v1/chat/completions" not in server.paths()


def test_a_model_without_context_length_needs_one_in_the_budget(api: Api) -> None:
    export, ranks = toy_export(context_length=None)
    server = FakeServer(export, ranks)
    with pytest.raises(TokenBudgetError, match=r"pass TokenBudget\(context_length=\.\.\.\)"):
        api.run(chat(messages=USER, max_tokens=5), api.client(server, token_budget=TokenBudget()))
    assert "POST /v1/chat/completions" not in server.paths()
    client = api.client(server, token_budget=TokenBudget(context_length=40))
    with pytest.raises(ContextWindowExceededError, match="window is 40 tokens"):
        api.run(chat(messages=USER, max_tokens=30), client)


def test_the_model_is_needed(api: Api, server: FakeServer) -> None:
    with pytest.raises(sdk.InvalidRequestParamsError, match="model"):
        api.run(chat(model=None, messages=USER), api.client(server, token_budget=TokenBudget()))


def test_without_the_export_the_servers_tokenize_counts(api: Api, server: FakeServer) -> None:
    server.has_export, server.max_model_len = False, 256
    client = api.client(server, token_budget=TokenBudget())
    with pytest.warns(TokenCountWarning), pytest.raises(ContextWindowExceededError) as info:
        api.run(chat(messages=USER, max_tokens=250), client)
    assert info.value.exact  # counted by the server's /tokenize
    assert info.value.prompt_tokens == server.tokenizer.count_chat(USER)
    assert "POST /tokenize" in server.paths() and "POST /v1/chat/completions" not in server.paths()


def test_without_export_or_tokenize_budgets_use_a_flagged_estimate(
    api: Api, server: FakeServer
) -> None:
    server.has_export = server.has_tokenize = False
    client = api.client(server, token_budget=TokenBudget(context_length=256))
    with pytest.warns(TokenCountWarning), pytest.raises(ContextWindowExceededError) as info:
        api.run(chat(messages=USER, max_tokens=250), client)
    assert not info.value.exact and "(estimated)" in str(info.value)
    api.run(chat(messages=USER, max_tokens=10), client)  # and a call that fits goes out
    assert server.paths()[-1] == "POST /v1/chat/completions"


def test_hosted_models_are_budgeted_with_their_public_encoding(
    api: Api, server: FakeServer
) -> None:
    server.has_export = False
    client = api.client(server, token_budget=TokenBudget())
    with pytest.raises(ContextWindowExceededError) as info:
        api.run(chat(model="gpt-4", messages=USER, max_tokens=8192), client)
    assert not info.value.exact and info.value.context_length == 8192
    assert info.value.prompt_tokens == 3 + 3 + 1 + 2  # cookbook: message, priming, role, text
    assert "POST /tokenize" not in server.paths()


# --- the default budget: "auto" ----------------------------------------------------------------


def test_auto_refuses_locally_once_the_client_holds_the_exact_tokenizer(
    api: Api, server: FakeServer
) -> None:
    client = api.client(server)  # default token_budget="auto"
    api.run(lambda c: c.tokenizer(MODEL), client)
    before = len(server.requests)
    with pytest.raises(ContextWindowExceededError) as info:
        api.run(chat(messages=USER, max_tokens=250), client)
    with pytest.raises(ContextWindowExceededError):
        api.run(chat(messages=USER, max_tokens=250, stream=True), client)
    assert len(server.requests) == before  # refused without a request
    assert info.value.exact and info.value.context_length == 256
    api.run(chat(messages=USER, max_tokens=10), client)  # what fits goes out
    # copies share what the client learnt
    copy = client.with_options(timeout=5.0)
    with pytest.raises(ContextWindowExceededError):
        api.run(chat(messages=USER, max_tokens=250), copy)


def test_auto_never_fetches_a_tokenizer_for_a_call(api: Api, server: FakeServer) -> None:
    api.run(chat(messages=USER, max_tokens=250), api.client(server))
    assert server.paths() == ["POST /v1/chat/completions"]  # it went out; the server decides


def test_auto_never_refuses_on_an_estimate(api: Api, server: FakeServer) -> None:
    server.has_export, server.max_model_len = False, 256
    client = api.client(server)
    with pytest.warns(TokenCountWarning):
        assert not api.run(lambda c: c.tokenizer(MODEL), client).exact
    api.run(chat(messages=USER, max_tokens=250), client)
    assert server.paths()[-1] == "POST /v1/chat/completions"
    assert "POST /tokenize" not in server.paths()  # and asked for no exact count either


@pytest.mark.parametrize("where", ["client", "call"])
def test_budget_none_switches_auto_off(api: Api, server: FakeServer, where: str) -> None:
    client = api.client(server, **({"token_budget": None} if where == "client" else {}))
    api.run(lambda c: c.tokenizer(MODEL), client)
    extra = {"budget": None} if where == "call" else {}
    api.run(chat(messages=USER, max_tokens=250, **extra), client)
    assert server.paths()[-1] == "POST /v1/chat/completions"


def test_a_budget_of_the_wrong_kind_is_refused(api: Api, server: FakeServer) -> None:
    with pytest.raises(ValueError, match="TokenBudget, 'auto' or None"):
        api.run(chat(messages=USER, budget="always"), api.client(server))
    assert server.paths() == []


def test_a_chats_tools_count_against_the_window(api: Api, server: FakeServer) -> None:
    # the tools are rendered into the prompt (sdk.tokens.render_chat), so they take room
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up. " * 20,
            "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
        },
    }
    client = api.client(server, token_budget=TokenBudget())
    room = 256 - TOK.count_chat(USER)
    api.run(chat(messages=USER, max_tokens=room - 4), client)  # fits without the tool
    with pytest.raises(ContextWindowExceededError) as info:
        api.run(chat(messages=USER, max_tokens=room - 4, tools=[tool]), client)
    assert info.value.prompt_tokens == TOK.count_chat(USER, tools=[tool])
