"""Render a model's chat template (Jinja2) the way Hugging Face transformers does, sandboxed.

Chat templates ship inside model files, so they are untrusted code: they run in Jinja2's
``ImmutableSandboxedEnvironment`` (no private attributes, no mutating lists or dicts), with the
same settings and helpers as transformers' ``apply_chat_template`` (``trim_blocks``,
``lstrip_blocks``, the ``loopcontrols`` extension, a ``tojson`` that keeps non-ASCII text,
``raise_exception`` and ``strftime_now``) so templates written for transformers render the same
text here.

Every way a template can fail - a syntax error, misuse of an undefined value, a call to
``raise_exception``, a sandbox violation, a type error inside an expression - surfaces as one
:class:`~sdk.tokens.errors.ChatTemplateError` with a readable message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NoReturn

import jinja2
import jinja2.ext
import jinja2.meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sdk.tokens.errors import ChatTemplateError

__all__ = ["render_chat_template", "template_variables"]

_MAX_REPEAT = 1_000_000  # longest str/list a template may build with `*`
_MAX_POWER_BITS = 4096  # largest result of `**`, in bits


class _TemplateRaised(Exception):
    """Raised by the template's own ``raise_exception(message)``."""


def _raise_exception(message: object) -> NoReturn:
    raise _TemplateRaised(str(message))


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's built-in tojson HTML-escapes <, >, & and '; templates expect plain JSON.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _ChatTemplateEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with unsafe access failing loudly and repetition bounded."""

    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        # The stock sandbox returns an Undefined that renders as "" - the escape attempt would
        # silently vanish. Fail instead, so a broken or hostile template is noticed.
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "*" and _repeat_length(left, right) > _MAX_REPEAT:
            raise SecurityError(f"the result of '*' would exceed {_MAX_REPEAT} items")
        if operator == "**" and _power_too_big(left, right):
            raise SecurityError(f"the result of '**' would exceed {_MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


def _repeat_length(left: Any, right: Any) -> int:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(count, int):
            return len(seq) * count
    return 0


def _power_too_big(base: Any, exponent: Any) -> bool:
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0:
        return False
    return abs(base) > 1 and abs(base).bit_length() * exponent > _MAX_POWER_BITS


def _make_environment() -> _ChatTemplateEnvironment:
    env = _ChatTemplateEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


_ENV = _make_environment()


@lru_cache(maxsize=32)
def _compile(template: str) -> jinja2.Template:
    try:
        return _ENV.from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(
            f"chat template syntax error on line {exc.lineno}: {exc.message}"
        ) from exc


@lru_cache(maxsize=32)
def template_variables(template: str) -> frozenset[str]:
    """The variables a template reads from outside (``messages``, ``tools``, ...).

    >>> sorted(template_variables("{% for m in messages %}{{ m.content }}{% endfor %}"))
    ['messages']
    """
    try:
        return frozenset(jinja2.meta.find_undeclared_variables(_ENV.parse(template)))
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(
            f"chat template syntax error on line {exc.lineno}: {exc.message}"
        ) from exc


def render_chat_template(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """Render ``messages`` with a Jinja2 chat ``template`` in a sandbox.

    ``extra`` becomes further template variables (``tools``, ``documents``, ...).

    >>> chatml = (
    ...     "{% for m in messages %}<|im_start|>{{ m['role'] }}\\n{{ m['content'] }}<|im_end|>\\n"
    ...     "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}"
    ... )
    >>> render_chat_template(chatml, [{"role": "user", "content": "Hi"}])
    '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
    """
    compiled = _compile(template)
    plain_messages = [_as_dict(index, message) for index, message in enumerate(messages)]
    try:
        return compiled.render(
            messages=plain_messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **extra,
        )
    except _TemplateRaised as exc:
        raise ChatTemplateError(f"the chat template rejected the messages: {exc}") from exc
    except SecurityError as exc:
        raise ChatTemplateError(f"the chat template broke the sandbox rules: {exc}") from exc
    except jinja2.UndefinedError as exc:
        raise ChatTemplateError(f"the chat template used an undefined value: {exc}") from exc
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"the chat template failed: {exc}") from exc
    except (TypeError, ValueError, LookupError, ArithmeticError, RecursionError) as exc:
        # e.g. `'a' + 1` inside the template: a bad template or bad messages
        raise ChatTemplateError(f"the chat template failed: {type(exc).__name__}: {exc}") from exc


def _as_dict(index: int, message: Any) -> dict[str, Any]:
    if not isinstance(message, Mapping):
        raise ChatTemplateError(
            f"message {index} must be a mapping with 'role' and 'content', "
            f"got {type(message).__name__}"
        )
    return dict(message)
