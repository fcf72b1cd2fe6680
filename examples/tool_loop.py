"""Tool loop: the model calls a Python function, the SDK runs it, the model answers with it.

Start a server in one terminal, run this in another::

    python -m server_ref serve            # the default model on http://127.0.0.1:8000
    python examples/tool_loop.py

``LLM_SDK_BASE_URL`` points it at another OpenAI-compatible server (default
``http://127.0.0.1:8000/v1``); ``LLM_SDK_API_KEY`` is sent as the Bearer key when set.

``run_tools`` describes ``convert_length`` to the model from its signature and docstring,
runs each call the model makes (arguments validated against the signature), sends the result
back and asks again until the model answers. Against the reference server the calls are
valid by construction: decoding is constrained to the tool's JSON schema. The default model
is tiny (135M parameters) and, once it has a result, tends to call the same tool again
rather than answer; ``max_rounds=1, on_limit="answer"`` asks it to answer after one round.
"""

from __future__ import annotations

from typing import Literal

from sdk import Client

Unit = Literal["miles", "kilometers", "meters", "centimeters", "feet", "inches"]
METERS = {
    "miles": 1609.344,
    "kilometers": 1000.0,
    "meters": 1.0,
    "centimeters": 0.01,
    "feet": 0.3048,
    "inches": 0.0254,
}


def convert_length(value: float, from_unit: Unit, to_unit: Unit) -> str:
    """Convert a length from one unit to another."""
    result = value * METERS[from_unit] / METERS[to_unit]
    print(f"  [tool] convert_length({value}, {from_unit!r}, {to_unit!r}) -> {result:.2f}")
    return f"{value:g} {from_unit} = {result:.2f} {to_unit}"


def main() -> None:
    with Client() as client:
        model = client.models.list().data[0].id
        question = "Convert 10 miles to km."
        print(f"Q: {question}")
        result = client.chat.completions.run_tools(
            model=model,
            messages=[{"role": "user", "content": question}],
            tools=[convert_length],
            tool_choice="required",  # the first request must call it; then the model decides
            max_rounds=1,
            on_limit="answer",
            max_tokens=64,
            temperature=0,  # greedy: the same run every time
        )
        print(f"A: {result.content}")
        print(f"   ({result.rounds} round of tool calls, {len(result.messages)} messages)")


if __name__ == "__main__":
    main()
