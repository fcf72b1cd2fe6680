"""An engine ``FaultHook`` for tests: raise at a chosen stage for a chosen request.

faults = Faults()
faults.add("sample", "req-3", after=2)  # its first two checks pass, every later one raises
engine.faults = faults
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from server_ref.engine.faults import Stage


class InjectedFault(RuntimeError):
    """What ``Faults`` raises; tests look for it in the server's log."""


@dataclass
class _Rule:
    stage: Stage
    matches: Callable[[str], bool]
    after: int
    seen: int = 0


@dataclass
class Faults:
    rules: list[_Rule] = field(default_factory=list)
    fired: list[tuple[Stage, str]] = field(default_factory=list)

    def add(
        self,
        stage: Stage,
        request_id: str | None = None,
        *,
        where: Callable[[str], bool] | None = None,
        after: int = 0,
    ) -> None:
        """Fail ``stage`` for ``request_id`` (or any request ``where`` accepts) on every check
        after the first ``after`` ones."""
        assert (request_id is None) != (where is None), "name a request id or a predicate"
        matches = where if where is not None else request_id.__eq__
        self.rules.append(_Rule(stage, matches, after))

    def check(self, stage: Stage, request_id: str) -> None:
        for rule in self.rules:
            if rule.stage == stage and rule.matches(request_id):
                rule.seen += 1
                if rule.seen > rule.after:
                    self.fired.append((stage, request_id))
                    raise InjectedFault(f"injected {stage} fault for {request_id}")
