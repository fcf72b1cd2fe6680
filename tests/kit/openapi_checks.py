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


# 400s for rules the document does not state: the prompt plus ``max_tokens`` must fit the
# context window; and the tools, tool choice and response format of a chat are checked
# against each other and compiled to a grammar (a tool_choice naming a tool that is not
# there, two tools with one name, a schema the grammar engine cannot enforce, a type the
# server does not serve), where the wire types, kept open as the SDK's, accept any.
BEYOND_THE_SCHEMA_CODES = {"context_length_exceeded"}
BEYOND_THE_SCHEMA_PARAMS = ("tools", "tool_choice", "response_format")


@schemathesis.check
def accepted_or_context_full(ctx: Any, response: Any, case: Any) -> bool | None:
    """``positive_data_acceptance``, except for the rules no schema states (above)."""
    if response.status_code == 400:
        error = _error(response)
        if error.get("code") in BEYOND_THE_SCHEMA_CODES:
            return None
        if str(error.get("param") or "").startswith(BEYOND_THE_SCHEMA_PARAMS):
            return None
    result: bool | None = positive_data_acceptance(ctx, response, case)
    return result


def _error(response: Any) -> dict[str, Any]:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    return error if isinstance(error, dict) else {}
