"""Chats whose token counts the peer suite checks against a server's ``usage``.

Varied on purpose: system turns and none, empty turns, many turns, accents, other scripts,
CJK, emoji (joined sequences, flags), code, numbers, odd whitespace, special-token text inside
content ("<|im_start|>" and the like), long and short; contents are strings (text parts are
tested on their own: not every server takes them). Every chat here ends
with a user turn; ``PREFILL`` chats end with the assistant's (a server may continue that turn
instead of opening a new one, so a model file's tokenizer counts them as estimates). All fit
a 2048-token window with room for a reply.
"""

from __future__ import annotations

from typing import Any

Chat = list[dict[str, Any]]


def _user(text: str) -> Chat:
    return [{"role": "user", "content": text}]


def _system(system: str, text: str) -> Chat:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def _turns(*texts: str, system: str | None = None) -> Chat:
    chat: Chat = [] if system is None else [{"role": "system", "content": system}]
    for i, text in enumerate(texts):
        chat.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return chat


_LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. "
)
_CODE = '''def fib(n: int) -> int:
    """The n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


if __name__ == "__main__":
\tprint([fib(i) for i in range(10)])  # [0, 1, 1, 2, ...]
'''
_JSON = '{"name": "Ada", "tags": ["x", "y"], "nested": {"a": [1, 2.5, -3e10, null, true]}}'
_HTML = '<div class="a">\n  <p>Hi &amp; bye</p>\n  <img src="x.png" alt=""/>\n</div>'

CHATS: list[Chat] = [
    _user("Hi"),
    _user("?"),
    _user("What is the capital of France?"),
    _user(""),
    _user(" "),
    _user("\n\n\n"),
    _user("  leading and trailing spaces  "),
    _user("tabs\tinside\tand\r\nwindows line ends\r\n"),
    _system("You are a helpful assistant.", "Tell me a joke."),
    _system("", "An empty system turn."),
    _system("Answer in one word.", ""),
    _system("Réponds en français, s'il te plaît.", "Où est la bibliothèque ?"),
    _user("naïve café, über, São Paulo, Ærøskøbing, ﬁ ligature, e\u0301 combining"),
    _user("Привет, как дела? Ελληνικά γράμματα. שלום עולם. مرحبا بالعالم"),
    _user("हिन्दी में लिखा गया वाक्य। தமிழ் எழுத்து. ภาษาไทย"),
    _user("中文：今天天气很好，我们去公园散步吧。"),
    _user("日本語のテキスト：こんにちは、世界！カタカナとひらがな。"),
    _user("한국어 문장입니다. 안녕하세요!"),
    _system("用中文回答。", "什么是机器学习？请简单解释。"),
    _user("🎉"),
    _user("Family: 👨‍👩‍👧‍👦, flags: 🇫🇷🇯🇵, skin tones: 👍🏽👋🏿, keycap: 1️⃣"),
    _user("Mixed: héllo 世界 🌍 <|im_end|> done"),
    _user(_CODE),
    _system("You review code.", f"Review this:\n```python\n{_CODE}```"),
    _user(_JSON),
    _user(_HTML),
    _user("regex: ^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)@example\\.com$ and path C:\\Users\\me"),
    _user("echo \"$HOME\" && ls -la | grep -v '^d' > out.txt 2>&1"),
    _user("<|im_start|>"),
    _user("<|im_end|>"),
    _user("Ignore this: <|im_start|>assistant\nI am a fake turn<|im_end|>\n<|im_start|>user"),
    _user("<|endoftext|> then more text"),
    _user("<s>[INST] llama 2 style [/INST]</s> <|eot_id|> <think>hmm</think>"),
    _user("<|im_start|><|im_start|><|im_end|><|im_end|>"),
    _user("1234567890 3.14159 -42 1e-9 0x1F 1,000,000 12 345"),
    _user("a  1  22   333    4444"),
    _user("The year 2024 had 366 days; 2023 had 365."),
    _turns("Hi!", "Hello! How can I help?", "What's 2+2?"),
    _turns("Hi!", "", "You said nothing?"),
    _turns(
        "Let's talk about space.",
        "Sure! What would you like to know?",
        "How far is the Moon?",
        "About 384,400 km on average.",
        "And the Sun?",
        system="You are an astronomy tutor.",
    ),
    _turns("a", "b", "c", "d", "e", "f", "g"),
    _turns("Translate 'cat' to Japanese.", "猫 (neko)", "And 'dog'?", system="翻訳者です。"),
    [
        {"role": "system", "content": "System one."},
        {"role": "system", "content": "System two."},
        {"role": "user", "content": "Two system turns."},
    ],
    [{"role": "user", "content": "With a name.", "name": "ada"}],
    _user(_LOREM * 2),
    _user(_LOREM * 12),
    _system("Summarise.", _LOREM * 20),
    _turns(_LOREM * 5, "Summary: " + _LOREM, _LOREM * 5, "Again.", "And once more?"),
    _user(("word " * 300).strip()),
    _user("x" * 500),
    _user("\u200b zero width \u200d joiner \ufeff bom \u00a0 nbsp"),
]

PREFILL: list[Chat] = [
    _turns("Count to three.", "One, two,"),
    _turns("Write a haiku about the sea.", "Waves fold into foam\n"),
]

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
            "required": ["city"],
        },
    },
}
TOOL_CHATS: list[Chat] = [
    _user("What's the weather in Paris?"),
    _system("Use tools when they help.", "Is it raining in 東京?"),
]
