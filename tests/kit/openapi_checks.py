"""Two schemathesis checks for server_ref, beside the built-in ones.

Imported by the fuzz test, and loaded by ``scripts/fuzz_openapi.py`` as schemathesis' hooks
file (``SCHEMATHESIS_HOOKS=tests/kit/openapi_checks.py``). Both run where the built-in
``positive_data_acceptance`` is switched off (``CONFIG``), which the second one wraps.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

# schemathesis settings (its TOML config as a dict) for fuzzing server_ref
CONFIG: dict[str, Any] = {
    # unknown query parameters are ignored (HTTP's custom), so they are not a negative case
    "generation": {"allow-extra-parameters": False},
    "checks": {"positive_data_acceptance": {"enabled": False}},  # accepted_or_context_full
    # show max_tokens and tokens in failure reports (their names look like secrets)
    "output": {"sanitization": {"enabled": False}},
}


@schemathesis.check
def openai_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every status >= 400 carries ``{"error": {message, type, param, code}}``, undocumented
    ones (405) included."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not OpenAI's shape: {body}"
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, f"not OpenAI's shape: {error}"
    assert isinstance(error["message"], str) and error["message"], error
    return None


@schemathesis.check
def accepted_or_context_full(ctx: Any, response: Any, case: Any) -> bool | None:
    """``positive_data_acceptance``, except for the one rule no schema can state: the prompt
    plus ``max_tokens`` must fit the context window (a 400 with that code)."""
    if response.status_code == 400 and _error_code(response) == "context_length_exceeded":
        return None
    result: bool | None = positive_data_acceptance(ctx, response, case)
    return result


def _error_code(response: Any) -> Any:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
