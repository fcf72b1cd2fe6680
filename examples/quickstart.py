"""Quickstart: ask a question with the synchronous ``Client``, then stream the next answer.

Start a server in one terminal, run this in another::

    python -m server_ref serve            # the default model on http://127.0.0.1:8000
    python examples/quickstart.py

``LLM_SDK_BASE_URL`` points it at another OpenAI-compatible server (default
``http://127.0.0.1:8000/v1``); ``LLM_SDK_API_KEY`` is sent as the Bearer key when set.
"""

from __future__ import annotations

from sdk import Client


def main() -> None:
    # Base URL and key come from LLM_SDK_BASE_URL / LLM_SDK_API_KEY (or pass them here).
    with Client() as client:
        model = client.models.list().data[0].id
        print(f"model: {model}")

        # One request, one answer.
        question = "What is the capital of France?"
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": question}],
            max_tokens=48,
            temperature=0,  # greedy: the same answer every run
        )
        print(f"Q: {question}")
        print(f"A: {reply.choices[0].message.content}")
        if reply.usage is not None:
            print(
                f"   ({reply.usage.prompt_tokens} prompt + "
                f"{reply.usage.completion_tokens} completion tokens)"
            )

        # The same call with stream=True: text arrives token by token.
        question = "Name three colours of the rainbow."
        print(f"Q: {question}")
        print("A: ", end="", flush=True)
        with client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": question}],
            max_tokens=48,
            temperature=0,
            stream=True,
        ) as stream:
            for text in stream.text_stream:
                print(text, end="", flush=True)
            final = stream.get_final_completion()  # the pieces, put back together
        print(f"\n   (finish reason: {final.choices[0].finish_reason})")


if __name__ == "__main__":
    main()
