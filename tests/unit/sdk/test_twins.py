"""The async drivers must stay mechanical twins of the sync ones.

Only the driving loops are twinned (everything I/O-free lives once, in ``BaseClient``,
``BaseStream`` and the ``_protocol`` flows). Each async class or function, with docstrings
dropped and its async spellings replaced by the sync ones, must be identical to its sync
twin. Any other difference is drift (openai-python's two request loops drifted apart exactly
this way), so it fails here.
"""

from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path

import pytest

import sdk

SDK_DIR = Path(sdk.__file__).parent

# async spelling -> sync spelling, applied in this order
SPELLINGS = [
    (r"AsyncGenerator\[T, None\]", "Generator[T, None, None]"),
    (r"AsyncIterator\[bytes\]", "Iterator[bytes]"),
    (r"\b_aiterate\b", "_iterate"),
    # the one async-only statement: a task, unlike a thread, can be cancelled while it keeps
    # its stream referenced, so the async loop watches the task that reads (_streaming.py)
    (r"\n *_watch_owner\(state\)", ""),
    (r"\bAPerform\b", "Perform"),
    (r"\basync (def|with|for)\b", r"\1"),
    (r"\bawait ", ""),
    (r"\bAsync(?=[A-Z])", ""),
    (r"\ba(close|read|iter_bytes)\b", r"\1"),
    (r"\banext\b", "next"),
    (r"__a(enter|exit|iter)__", r"__\1__"),
    (r"__anext__", "__next__"),
    (r"asyncio\.sleep", "time.sleep"),
    (r"Awaitable\[None\]", "None"),
]


def class_source(path: Path, name: str) -> str:
    """The source of the top-level class or function ``name``, docstrings dropped."""
    tree = ast.parse(path.read_text())
    kinds = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    cls = next(n for n in tree.body if isinstance(n, kinds) and n.name == name)
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                node.body = node.body[1:] or [ast.Pass()]
    cls.name = "Twin"
    return ast.unparse(cls)


@pytest.mark.parametrize(
    ("module", "sync_name"),
    [
        ("_client.py", "Client"),
        ("_streaming.py", "Stream"),
        ("_streaming.py", "_iterate"),
        ("_resources.py", "ChatCompletions"),
        ("_resources.py", "Chat"),
        ("_resources.py", "Completions"),
        ("_resources.py", "Embeddings"),
        ("_resources.py", "Models"),
        ("_chat_streaming.py", "ChatCompletionStream"),
        ("_chat_streaming.py", "ChatCompletionStreamManager"),
        ("_routing/router.py", "Router"),
    ],
)
def test_async_class_is_a_twin_of_the_sync_class(module: str, sync_name: str) -> None:
    async_module = "_async_client.py" if module == "_client.py" else module
    expected = class_source(SDK_DIR / module, sync_name)
    async_name = "_aiterate" if sync_name == "_iterate" else "Async" + sync_name
    actual = class_source(SDK_DIR / async_module, async_name)
    for pattern, replacement in SPELLINGS:
        actual = re.sub(pattern, replacement, actual)
    diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(), lineterm=""))
    assert not diff, f"Async{sync_name} drifted from {sync_name}:\n{diff}"
