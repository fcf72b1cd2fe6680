"""The trim policies of ``TokenBudget``, as sub-planners (see ``sdk.tokens.budget``).

Each yields candidate prompts to be counted and returns the best one it found with its
count; the caller checks whether that fits. Both search by bisection, so a trim costs
``O(log n)`` counts: n turns for ``drop_oldest``, n characters for ``truncate_middle``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any, TypeAlias

from sdk.tokens.messages import content_text

__all__ = ["drop_oldest", "shrink_text", "truncate_longest"]

Messages: TypeAlias = list[dict[str, Any]]
CountRequest: TypeAlias = Messages | str


def _split_turns(messages: Messages) -> tuple[Messages, Messages, Messages]:
    """(leading system messages, droppable middle, last user message and what follows)."""
    start = 0
    while start < len(messages) and messages[start].get("role") in ("system", "developer"):
        start += 1
    last_user = max(
        (i for i in range(start, len(messages)) if messages[i].get("role") == "user"),
        default=len(messages) - 1 if len(messages) > start else start,
    )
    return messages[:start], messages[start:last_user], messages[last_user:]


def drop_oldest(
    messages: Messages, tokens: int, target: int
) -> Generator[CountRequest, int, tuple[Messages, int]]:
    """Drop the fewest oldest middle turns that make the chat fit (binary search)."""
    head, middle, tail = _split_turns(messages)
    if tokens <= target or not middle:
        return messages, tokens
    # Counts fall as more turns go (a template may add per-turn text, never remove it), so
    # binary search for the smallest number of dropped turns that fits.
    smallest = head + tail
    smallest_tokens = yield smallest
    if smallest_tokens > target:
        return smallest, smallest_tokens
    low, high = 0, len(middle)  # dropping `high` fits, dropping `low` does not
    best, best_tokens = smallest, smallest_tokens
    while high - low > 1:
        mid = (low + high) // 2
        candidate = head + middle[mid:] + tail
        count = yield candidate
        if count <= target:
            high, best, best_tokens = mid, candidate, count
        else:
            low = mid
    return best, best_tokens


def truncate_longest(
    messages: Messages, tokens: int, target: int, marker: str
) -> Generator[CountRequest, int, tuple[Messages, int]]:
    """Cut the middle of the longest message's content until the chat fits."""
    if tokens <= target or not messages:
        return messages, tokens
    texts = [content_text(m.get("content")) for m in messages]
    index = max(range(len(messages)), key=lambda i: len(texts[i]))

    def with_content(text: str) -> Messages:
        changed = dict(messages[index], content=text)
        return [*messages[:index], changed, *messages[index + 1 :]]

    cut, count = yield from shrink_text(texts[index], tokens, target, marker, with_content)
    return with_content(cut), count


def shrink_text(
    text: str,
    tokens: int,
    target: int,
    marker: str,
    wrap: Callable[[str], CountRequest],
) -> Generator[CountRequest, int, tuple[str, int]]:
    """The longest middle-cut of ``text`` whose count (of ``wrap(cut)``) is at most ``target``.

    Characters are kept in equal halves from both ends; binary search on how many.
    """
    if tokens <= target:
        return text, tokens
    shortest = marker
    shortest_tokens = yield wrap(shortest)
    if shortest_tokens > target:
        return shortest, shortest_tokens
    low, high = 0, len(text)  # keeping `low` characters fits, keeping `high` does not
    best, best_tokens = shortest, shortest_tokens
    # Start near the answer: tokens are roughly proportional to characters.
    guess = math.floor(len(text) * max(0.0, 1 - (tokens - target) / max(tokens, 1)) * 0.98)
    if 0 < guess < high:
        candidate = _middle_cut(text, guess, marker)
        count = yield wrap(candidate)
        if count <= target:
            low, best, best_tokens = guess, candidate, count
        else:
            high = guess
    while high - low > 1:
        keep = (low + high) // 2
        candidate = _middle_cut(text, keep, marker)
        count = yield wrap(candidate)
        if count <= target:
            low, best, best_tokens = keep, candidate, count
        else:
            high = keep
    return best, best_tokens


def _middle_cut(text: str, keep: int, marker: str) -> str:
    head = (keep + 1) // 2
    tail = keep - head
    return text[:head] + marker + (text[len(text) - tail :] if tail else "")
