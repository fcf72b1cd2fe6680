"""Fit a conversation that has outgrown the context window, with a token budget.

A chat history grows turn by turn until it no longer fits the model's context window; sent
as is, the server would refuse it. This example

1. fetches the model's tokenizer (``client.tokenizer``: exact when the server exports it)
   and builds a conversation about 1.5 times the window;
2. shows a check-only ``TokenBudget`` refusing it before anything is sent;
3. plans locally with ``fit_messages(..., TokenBudget(trim="drop_oldest"))``: the oldest
   turns go, the system message and the last question stay;
4. sends it with the same budget and compares the server's ``usage.prompt_tokens`` with the
   local count.

Run it against a running server::

    python -m server_ref serve
    python examples/fit_long_conversation.py

``LLM_SDK_BASE_URL`` points it at another server (default ``http://127.0.0.1:8000/v1``).
"""

from __future__ import annotations

import sdk
from sdk import Client, TokenBudget
from sdk.tokens import fit_messages
from sdk.types import ChatMessageParam

REPLY_TOKENS = 48
SYSTEM: ChatMessageParam = {
    "role": "system",
    "content": "You are a helpful travel assistant. Answer briefly.",
}
CITIES = ["Lisbon", "Oslo", "Vienna", "Krakow", "Seville", "Porto", "Ghent", "Turin"]


def long_conversation(tokenizer: sdk.Tokenizer, target: int) -> list[ChatMessageParam]:
    """Trip-planning turns until the chat is ``target`` tokens, then the question."""
    messages: list[ChatMessageParam] = [SYSTEM]
    day = 0
    while tokenizer.count_chat(messages) < target:
        for _ in range(10):  # count every ten turns: rendering the template is not free
            day += 1
            city = CITIES[day % len(CITIES)]
            messages += [
                {"role": "user", "content": f"Day {day}: we are in {city}. Any ideas?"},
                {
                    "role": "assistant",
                    "content": f"On day {day} in {city}, walk the old town in the morning, "
                    "visit a museum after lunch and find a small restaurant near the river.",
                },
            ]
    messages.append({"role": "user", "content": "Which city are we in on the last day?"})
    return messages


def main() -> None:
    with Client() as client:  # base URL from LLM_SDK_BASE_URL
        model = client.models.list().data[0].id
        tokenizer = client.tokenizer(model)
        window = tokenizer.context_length or 4096
        kind = "exact" if tokenizer.exact else f"an estimate ({tokenizer.source})"
        print(f"model {model}: context window {window} tokens; local counts are {kind}")

        history = long_conversation(tokenizer, target=window * 3 // 2)
        total = tokenizer.count_chat(history)
        print(f"conversation: {len(history)} messages, {total} tokens")

        # A budget without a trim policy only checks: the call is refused locally.
        try:
            client.chat.completions.create(
                model=model, messages=history, max_tokens=REPLY_TOKENS, budget=TokenBudget()
            )
        except sdk.ContextWindowExceededError as exc:
            print(f"without trimming: {type(exc).__name__}: {exc}")

        # Plan locally: which messages survive, and how many tokens they are.
        budget = TokenBudget(trim="drop_oldest")
        plan = fit_messages(tokenizer, history, max_tokens=REPLY_TOKENS, budget=budget)
        assert plan.messages is not None
        print(
            f"drop_oldest keeps {len(plan.messages)} of {len(history)} messages: "
            f"{plan.prompt_tokens} prompt tokens + {REPLY_TOKENS} for the reply "
            f"<= {plan.context_length}"
        )
        print(f"first kept after the system message: {plan.messages[1]['content'][:50]!r}")

        # The same budget on the call trims the same way, then sends.
        reply = client.chat.completions.create(
            model=model, messages=history, max_tokens=REPLY_TOKENS, temperature=0, budget=budget
        )
        print(f"reply: {reply.choices[0].message.content}")
        if reply.usage is not None:
            same = "the same count" if reply.usage.prompt_tokens == plan.prompt_tokens else "differ"
            print(
                f"server counted prompt_tokens={reply.usage.prompt_tokens}, "
                f"local plan {plan.prompt_tokens}: {same}"
            )


if __name__ == "__main__":
    main()
