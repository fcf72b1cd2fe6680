"""Answer a question from a small corpus: embed, retrieve, pack into the window, stream.

1. embeds the passages of ``examples/data/llm_sdk_notes.txt`` (notes about this project) with
   the server's embedding model, in one request;
2. embeds the question and ranks the passages by cosine similarity (``sdk.vectors.top_k``);
3. packs the best passages, best first, into one prompt: as many as fit the chat model's
   context window with room for the answer, counted exactly with the chat model's exported
   tokenizer (``sdk.tokens.fit_messages`` with a ``TokenBudget``), so the call never
   overflows; the server's ``usage.prompt_tokens`` is printed beside the local count;
4. streams the answer.

Run it against a running server (``serve`` loads a chat and an embedding model)::

    python -m server_ref serve
    python examples/retrieval_qa.py "What happens when the server's waiting queue is full?"

``LLM_SDK_BASE_URL`` points it at another server (default ``http://127.0.0.1:8000/v1``);
``--chat-model`` / ``--embedding-model`` name the models where the server's model list does
not say which is which.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sdk
from sdk import Client, TokenBudget
from sdk.tokens import fit_messages
from sdk.types import ChatMessageParam
from sdk.vectors import Match, top_k

CORPUS = Path(__file__).parent / "data" / "llm_sdk_notes.txt"
QUESTION = "What is the default embedding model and how many dimensions do its vectors have?"
SYSTEM = (
    "Answer the question in one or two sentences, using only the numbered passages. "
    "Name the passage you used, like [3]."
)


def load_passages(path: Path = CORPUS) -> list[str]:
    """The corpus: one passage per paragraph (paragraphs are separated by blank lines)."""
    return [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def pick_models(client: Client, chat: str | None, embedding: str | None) -> tuple[str, str]:
    """The chat and the embedding model: as given, else by the capabilities the server lists."""
    cards = client.models.list().data

    def first(capability: str) -> str:
        found = [m.id for m in cards if capability in (m.capabilities or [])]
        if not found:
            raise SystemExit(f"the server lists no model for {capability}; pass its name")
        return found[0]

    return chat or first("chat"), embedding or first("embeddings")


def prompt(question: str, passages: list[tuple[int, str]]) -> list[ChatMessageParam]:
    context = "\n\n".join(f"[{number}] {text}" for number, text in passages)
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Passages:\n\n{context}\n\nQuestion: {question}"},
    ]


def pack(
    tokenizer: sdk.Tokenizer, question: str, ranked: list[tuple[int, str]], answer_tokens: int
) -> tuple[list[tuple[int, str]], int]:
    """As many of the ``ranked`` passages as fit (best first), and the prompt's tokens.

    ``fit_messages`` with a check-only ``TokenBudget`` counts the whole chat (template
    included) exactly and raises ``ContextWindowExceededError`` when ``answer_tokens`` would
    not fit after it: the first passage that does not fit ends the packing.
    """
    budget = TokenBudget()  # no trimming: fit or refuse
    best = fit_messages(tokenizer, prompt(question, []), max_tokens=answer_tokens, budget=budget)
    kept: list[tuple[int, str]] = []
    for passage in ranked:
        try:
            plan = fit_messages(
                tokenizer,
                prompt(question, [*kept, passage]),
                max_tokens=answer_tokens,
                budget=budget,
            )
        except sdk.ContextWindowExceededError:
            break
        kept.append(passage)
        best = plan
    return kept, best.prompt_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default=QUESTION)
    parser.add_argument("--chat-model")
    parser.add_argument("--embedding-model")
    parser.add_argument("--top-k", type=int, default=8, help="passages retrieved (default 8)")
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.4,
        help="leave out passages less similar to the question than this (default 0.4)",
    )
    parser.add_argument("--max-tokens", type=int, default=96, help="room for the answer")
    args = parser.parse_args()

    passages = load_passages()
    with Client() as client:  # base URL from LLM_SDK_BASE_URL
        chat_model, embedding_model = pick_models(client, args.chat_model, args.embedding_model)

        corpus = client.embeddings.create(model=embedding_model, input=passages)
        vectors = [item.embedding for item in corpus.data]
        used = corpus.usage.prompt_tokens if corpus.usage else "?"
        print(f"embedded {len(passages)} passages with {embedding_model} ({used} tokens)")

        query = client.embeddings.create(model=embedding_model, input=args.question)
        matches: list[Match] = top_k(query.data[0].embedding, vectors, k=args.top_k)
        print(f"question: {args.question}")
        print("retrieved: " + ", ".join(f"[{m.row + 1}] {m.score:.2f}" for m in matches))

        tokenizer = client.tokenizer(chat_model)
        window = tokenizer.context_length
        exact = "exact" if tokenizer.exact else "estimated"
        ranked = [(m.row + 1, passages[m.row]) for m in matches if m.score >= args.min_score]
        kept, prompt_tokens = pack(tokenizer, args.question, ranked, args.max_tokens)
        print(
            f"packed {len(kept)} of {len(ranked)} passages scoring >= {args.min_score}: "
            f"{prompt_tokens} prompt tokens "
            f"({exact}) + {args.max_tokens} for the answer <= {window} ({chat_model}'s window)"
        )

        stream = client.chat.completions.create(
            model=chat_model,
            messages=prompt(args.question, kept),
            max_tokens=args.max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            budget=TokenBudget(),  # checked again on the way out: refused, never overflowing
        )
        print("answer: ", end="", flush=True)
        with stream:
            for text in stream.text_stream:
                print(text, end="", flush=True)
            final = stream.get_final_completion()
        print()
        if final.usage is not None:
            same = "the same count" if final.usage.prompt_tokens == prompt_tokens else "differ"
            print(
                f"server counted prompt_tokens={final.usage.prompt_tokens}, "
                f"local plan {prompt_tokens}: {same}"
            )


if __name__ == "__main__":
    main()
